//! ListModels a page at a time: model_id order, pages that neither repeat nor skip while
//! models come and go between them, `page_size` 0 as before paging (everything in one
//! answer), a capped page size, and a malformed token refused naming `page_token`.

use std::collections::BTreeSet;

use backprop::pb;
use support::*;
use tonic::Code;

async fn page(c: &mut Client, page_size: u32, page_token: &str) -> pb::ListModelsResponse {
    c.list_models(pb::ListModelsRequest {
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    })
    .await
    .expect("ListModels")
    .into_inner()
}

fn ids(r: &pb::ListModelsResponse) -> Vec<String> {
    r.models.iter().map(|m| m.model_id.clone()).collect()
}

/// `n` tiny models; their ids in order.
async fn models(c: &mut Client, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(create(c, wire_spec(2, &[], 2)).await.0);
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn seven_models_come_in_pages_of_three_three_and_one() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let all = models(&mut c, 7).await;

    let first = page(&mut c, 3, "").await;
    assert_eq!(ids(&first), all[0..3]);
    assert!(!first.next_page_token.is_empty());
    let second = page(&mut c, 3, &first.next_page_token).await;
    assert_eq!(ids(&second), all[3..6]);
    assert!(!second.next_page_token.is_empty());
    let third = page(&mut c, 3, &second.next_page_token).await;
    assert_eq!(ids(&third), all[6..7]);
    assert_eq!(third.next_page_token, "", "the last page has no next");
    // Every model once, with its summary filled in.
    let paged: Vec<_> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p.models.iter())
        .collect();
    assert_eq!(paged.len(), 7);
    assert!(
        paged
            .iter()
            .all(|m| m.spec.is_some() && m.parameter_count == 6)
    );

    // page_size 0 (and a v1 client's empty request) is everything at once, in order.
    for r in [
        page(&mut c, 0, "").await,
        c.list_models(pb::ListModelsRequest::default())
            .await
            .unwrap()
            .into_inner(),
    ] {
        assert_eq!(ids(&r), all);
        assert_eq!(r.next_page_token, "");
    }
    // A page that ends exactly at the last model says no more follow.
    let six = page(&mut c, 6, "").await;
    let rest = page(&mut c, 1, &six.next_page_token).await;
    assert_eq!(ids(&rest), all[6..7]);
    assert_eq!(rest.next_page_token, "");
    assert_eq!(page(&mut c, 7, "").await.next_page_token, "");
    srv.stop().await;
}

#[tokio::test]
async fn models_deleted_or_created_between_pages_do_not_shift_the_rest() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let all = models(&mut c, 7).await;
    let first = page(&mut c, 3, "").await;
    assert_eq!(ids(&first), all[0..3]);
    // Between pages: one already listed and one not yet listed go, and new ones come.
    for gone in [&all[1], &all[4]] {
        c.delete_model(pb::DeleteModelRequest {
            model_id: gone.clone(),
        })
        .await
        .expect("DeleteModel");
    }
    let added = models(&mut c, 4).await;
    let mut rest = Vec::new();
    let mut token = first.next_page_token.clone();
    while !token.is_empty() {
        let p = page(&mut c, 3, &token).await;
        assert!(p.models.len() <= 3);
        rest.extend(ids(&p));
        token = p.next_page_token;
    }
    // Exactly the models alive now that sort after the first page: none of the first
    // page again, none of the later ones skipped because one before them went.
    let last_seen = &all[2];
    let want: Vec<String> = all[3..]
        .iter()
        .filter(|id| **id != all[4])
        .chain(added.iter().filter(|id| *id > last_seen))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(rest, want);
    srv.stop().await;
}

#[tokio::test]
async fn a_malformed_page_token_is_invalid_argument() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let all = models(&mut c, 2).await;
    let long = "p1:".to_string() + &"z".repeat(200);
    for token in [
        "garbage".to_string(),
        all[0].clone(), // an id is not a token
        format!("p2:{}", all[0]),
        format!("p1:{}", &all[0][..31]),
        long.clone(),
    ] {
        let e = c
            .list_models(pb::ListModelsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&e, "page_token");
        assert_reason(&e, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert!(!e.message().contains(&long), "a long token echoed whole");
    }
    // A token stays a position after its model is deleted.
    let first = page(&mut c, 1, "").await;
    c.delete_model(pb::DeleteModelRequest {
        model_id: all[0].clone(),
    })
    .await
    .unwrap();
    let next = page(&mut c, 1, &first.next_page_token).await;
    assert_eq!(ids(&next), all[1..2]);
    assert_eq!(next.next_page_token, "");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_is_capped_at_1000() {
    let srv = TestServer::start().await;
    let mut c = srv.trainer();
    let all = models(&mut c, 1001).await;
    let first = page(&mut c, u32::MAX, "").await;
    assert_eq!(ids(&first), all[..1000]);
    assert!(!first.next_page_token.is_empty());
    let second = page(&mut c, 5000, &first.next_page_token).await;
    assert_eq!(ids(&second), all[1000..]);
    assert_eq!(second.next_page_token, "");
    assert_eq!(page(&mut c, 0, "").await.models.len(), 1001);
    srv.stop().await;
}
