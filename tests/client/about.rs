//! Names and labels from the command line: `train --name/--label`, the `models` table
//! and its filters, `show` by name, `label` and `rename`, and `train --model` changing
//! the labels of the model it continues.
use crate::cli::{Server, backprop, blobs_csv, scratch};

#[test]
fn models_carry_names_labels_and_final_metrics() {
    let server = Server::start();
    let addr = server.address();
    let dir = scratch("about");
    let data = dir.join("blobs.csv");
    blobs_csv(&data);
    let data_arg = data.to_str().expect("utf-8 path");
    let at = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--address", &addr]);
        backprop(&all)
    };

    let run = at(&[
        "train",
        "--data",
        data_arg,
        "--epochs",
        "5",
        "--seed",
        "3",
        "--standardize",
        "--name",
        "blobs",
        "--label",
        "team=ml",
        "--label",
        "run=1",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let id = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("model ")?.split(':').next())
        .expect("model id")
        .to_string();
    let held_out: f64 = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("held-out accuracy "))
        .and_then(|l| l.split(',').next())
        .and_then(|a| a.parse().ok())
        .expect("held-out accuracy");
    let other = at(&["train", "--data", data_arg, "--epochs", "1", "--seed", "4"]);
    assert_eq!(other.code, 0, "{}", other.stderr);

    // The table: name, final metrics, age, labels.
    let run = at(&["models"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let header = run.stdout.lines().next().expect("header");
    for column in [
        "ID", "NAME", "STEP", "LOSS", "ACC", "VAL_ACC", "CREATED", "LABELS",
    ] {
        assert!(header.split_whitespace().any(|c| c == column), "{header}");
    }
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", run.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "blobs", "{row}");
    assert_eq!(cells.last(), Some(&"run=1,team=ml"), "{row}");
    // The validation accuracy is the fit's last epoch's, on the held-out rows.
    let column = header.find("VAL_ACC").expect("VAL_ACC");
    let cell: String = row
        .chars()
        .skip(column)
        .take_while(|c| !c.is_whitespace())
        .collect();
    let val: f64 = cell
        .parse()
        .unwrap_or_else(|_| panic!("VAL_ACC {cell:?} in {row}"));
    assert!((val - held_out).abs() < 5e-5, "{val} vs {held_out}");

    // Filters.
    let run = at(&["models", "--label", "team=ml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    let models = v["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "{v}");
    assert_eq!(models[0]["model_id"], id.as_str());
    assert_eq!(models[0]["metadata"]["name"], "blobs");
    assert_eq!(models[0]["metadata"]["labels"]["run"], "1");
    assert!(
        models[0]["metadata"]["dataset_id"]
            .as_str()
            .is_some_and(|d| d.len() == 32)
    );
    assert!(models[0]["last_epoch"]["validation_accuracy"].is_number());
    assert_eq!(
        at(&["models", "--name", "nobody"]).stdout.trim(),
        "no models"
    );

    // show by name; label; rename.
    let run = at(&["show", "blobs"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("model      {id}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("name       blobs"), "{}", run.stdout);
    assert!(
        run.stdout.contains("labels     run=1,team=ml"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" UTC ("), "{}", run.stdout);
    assert!(
        run.stdout.contains("validation accuracy "),
        "{}",
        run.stdout
    );
    let run = at(&["label", "blobs", "run=2", "team-", "stage=dev"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        format!("{id}: name \"blobs\", labels run=2,stage=dev")
    );
    let run = at(&["label", &id[..8], "bad key=1"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("INVALID_ARGUMENT") && run.stderr.contains("set_labels"),
        "{}",
        run.stderr
    );
    let run = at(&["label", &id, "novalue"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("\"novalue\" is not KEY=VALUE: give KEY=VALUE to set a label"),
        "{}",
        run.stderr
    );
    let run = at(&["rename", "blobs", "blobs v2", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(v["name"], "blobs v2");
    assert_eq!(v["model_id"], id.as_str());
    assert_eq!(at(&["show", "blobs"]).code, 1, "the old name is gone");

    // train --model changes the labels of the model it continues.
    let run = at(&[
        "train",
        "--data",
        data_arg,
        "--epochs",
        "1",
        "--model",
        "blobs v2",
        "--label",
        "stage=prod",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run = at(&["show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(v["metadata"]["labels"]["stage"], "prod");
    assert_eq!(v["metadata"]["name"], "blobs v2");
    assert_eq!(at(&["delete", "--all", "--yes"]).code, 0);
}
