//! `backprop models`, `show ID` and `delete ID`: the server's sessions as tables for
//! people, or JSON (`--json`) for scripts.
use serde_json::json;

use super::about::{self, AboutArgs, age, final_metrics, labels_text};
use super::client::{self, CONNECT_TIMEOUT, Connection, ServerArgs};
use super::describe::{self, table};
use super::error::CliError;
use crate::pb;
use crate::pb::trainer_client::TrainerClient;
use crate::service::route::{routed, routed_to};

#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    /// Behind a proxy in front of several replicas: list this replica's models (each
    /// replica lists its own; without it the proxy picks one, named in the output).
    #[arg(long, value_name = "REPLICA")]
    pub replica: Option<String>,
    /// Only the models with this name and every one of these labels.
    #[command(flatten)]
    pub only: AboutArgs,
    /// Also print each model's parameter count, loss function, optimizer, dtype and
    /// dataset.
    #[arg(long)]
    pub wide: bool,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The model id (from `backprop models` or `backprop train`), or a prefix of it that
    /// names one model.
    pub id: String,
    /// Also print every parameter's values.
    #[arg(long)]
    pub values: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The models: full ids, or prefixes that name exactly one of the caller's models.
    #[arg(required_unless_present = "all")]
    pub ids: Vec<String>,
    /// Every model the server (behind a proxy: the replica that answers) holds for the
    /// caller; asks for confirmation unless --yes.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Do not ask before deleting with --all.
    #[arg(long)]
    pub yes: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Models asked for per ListModels call: answers stay small (about 100 bytes a model)
/// however many models the server holds.
const PAGE_SIZE: u32 = 500;

pub async fn models(args: ModelsArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let to = args.replica.as_deref().unwrap_or("");
    let filter = pb::ListModelsRequest {
        name: args.only.name(),
        labels: args.only.labels(),
        ..Default::default()
    };
    let (list, replica) = list_models(&mut client::trainer(channel), to, filter).await?;
    if args.json {
        let models: Vec<_> = list
            .iter()
            .map(|m| {
                let (last_step, last_epoch) =
                    about::last_json(m.last_step.as_ref(), m.last_epoch.as_ref());
                json!({
                    "model_id": m.model_id,
                    "step": m.step,
                    "parameter_count": m.parameter_count,
                    "idle_seconds": m.idle_seconds,
                    "spec": m.spec.as_ref().map(describe::spec_json),
                    "metadata": about::metadata_json(m.metadata.as_ref()),
                    "last_step": last_step,
                    "last_epoch": last_epoch,
                })
            })
            .collect();
        let mut out = json!({ "models": models });
        if !replica.is_empty() {
            // The replica that answered, behind a proxy (absent for a single server).
            out["replica"] = json!(replica);
        }
        println!("{out}");
        return Ok(());
    }
    if !replica.is_empty() {
        println!("replica {replica} (each replica lists its own models: --replica NAME)");
    }
    if list.is_empty() {
        println!("no models");
        return Ok(());
    }
    print!("{}", models_table(&list, args.wide));
    Ok(())
}

/// The `models` table: who each model is and how its training ended (the latest
/// batch's loss and accuracy, the latest epoch's validation accuracy); labels when any
/// model has some; with `wide`, how it is built.
fn models_table(list: &[pb::ModelSummary], wide: bool) -> String {
    let labelled = list
        .iter()
        .any(|m| m.metadata.as_ref().is_some_and(|a| !a.labels.is_empty()));
    let mut header = vec![
        "ID", "NAME", "LAYERS", "STEP", "LOSS", "ACC", "VAL_ACC", "CREATED", "IDLE",
    ];
    if wide {
        header.extend(["PARAMS", "LOSS_FN", "OPTIMIZER", "DTYPE", "DATASET"]);
    }
    if labelled {
        header.push("LABELS");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            let spec = m.spec.clone().unwrap_or_default();
            let about = m.metadata.clone().unwrap_or_default();
            let [loss, acc, val] = final_metrics(m.last_step.as_ref(), m.last_epoch.as_ref());
            let mut row = vec![
                m.model_id.clone(),
                if about.name.is_empty() {
                    "-".into()
                } else {
                    about.name.clone()
                },
                describe::layers(&spec),
                m.step.to_string(),
                loss,
                acc,
                val,
                age(about.created_time),
                about::duration(m.idle_seconds),
            ];
            if wide {
                row.extend([
                    m.parameter_count.to_string(),
                    describe::loss(&spec).into(),
                    describe::optimizer(&spec),
                    describe::dtype(&spec).into(),
                    if about.dataset_id.is_empty() {
                        "-".into()
                    } else {
                        about.dataset_id.clone()
                    },
                ]);
            }
            if labelled {
                row.push(labels_text(&about));
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// Every model of the caller's on one server (the replica `to` names, or any), a page
/// at a time, in model_id order, and the replica that answered (every page after the
/// first is routed to it: its page tokens are its own).
async fn all_models(
    trainer: &mut TrainerClient<Connection>,
    to: &str,
) -> Result<(Vec<pb::ModelSummary>, String), CliError> {
    list_models(trainer, to, pb::ListModelsRequest::default()).await
}

/// [`all_models`] that match `filter`'s name and labels.
async fn list_models(
    trainer: &mut TrainerClient<Connection>,
    to: &str,
    filter: pb::ListModelsRequest,
) -> Result<(Vec<pb::ModelSummary>, String), CliError> {
    let mut models = Vec::new();
    let (mut page_token, mut to) = (String::new(), to.to_string());
    loop {
        let page = trainer
            .list_models(routed_to(
                pb::ListModelsRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                    ..filter.clone()
                },
                &to,
            ))
            .await
            .map_err(CliError::rpc("ListModels"))?
            .into_inner();
        models.extend(page.models);
        if page.next_page_token.is_empty() {
            return Ok((models, page.replica));
        }
        (page_token, to) = (page.next_page_token, page.replica);
    }
}

pub async fn show(args: ShowArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let id = resolve(&mut trainer, &args.id).await?;
    let m = trainer
        .get_model(routed(pb::GetModelRequest {
            model_id: id,
            include_values: args.values,
            ..Default::default()
        }))
        .await
        .map_err(CliError::rpc("GetModel"))?
        .into_inner();
    let spec = m.spec.clone().unwrap_or_default();
    if args.json {
        let parameters: Vec<_> = m
            .parameters
            .iter()
            .map(|p| {
                let mut o = json!({ "name": p.name, "shape": p.shape });
                if let Some(t) = &p.value {
                    o["values"] = json!(values(t));
                }
                o
            })
            .collect();
        let (last_step, last_epoch) = about::last_json(m.last_step.as_ref(), m.last_epoch.as_ref());
        let out = json!({
            "model_id": m.model_id,
            "step": m.step,
            "parameter_count": m.parameter_count,
            "spec": describe::spec_json(&spec),
            "parameters": parameters,
            "metadata": about::metadata_json(m.metadata.as_ref()),
            "last_step": last_step,
            "last_epoch": last_epoch,
        });
        println!("{out}");
        return Ok(());
    }
    let meta = m.metadata.clone().unwrap_or_default();
    let mut fields = vec![("model", m.model_id.clone())];
    if !meta.name.is_empty() {
        fields.push(("name", meta.name.clone()));
    }
    if !meta.labels.is_empty() {
        fields.push(("labels", labels_text(&meta)));
    }
    fields.extend([
        ("created", created_text(meta.created_time)),
        ("layers", describe::layers(&spec)),
        ("bias", if spec.no_bias { "off" } else { "on" }.into()),
    ]);
    let loss = match spec.svm_margin {
        Some(d) if describe::loss(&spec) == "svm" => {
            format!("svm (margin {})", describe::number(d))
        }
        _ => describe::loss(&spec).into(),
    };
    fields.extend([
        ("loss", loss),
        ("l2", describe::number(spec.l2)),
        ("optimizer", describe::optimizer(&spec)),
        ("init", describe::init(&spec)),
        ("dtype", describe::dtype(&spec).into()),
        ("input", describe::input(&spec)),
    ]);
    if !spec.class_names.is_empty() {
        fields.push(("classes", spec.class_names.join(", ")));
    }
    fields.extend([
        ("step", m.step.to_string()),
        ("parameters", m.parameter_count.to_string()),
    ]);
    if !meta.dataset_id.is_empty() {
        fields.push(("dataset", meta.dataset_id.clone()));
    }
    let [loss, acc, val] = final_metrics(m.last_step.as_ref(), m.last_epoch.as_ref());
    if m.last_step.is_some() {
        fields.push(("last batch", format!("loss {loss}, accuracy {acc}")));
    }
    if m.last_epoch.is_some() {
        fields.push(("validation", format!("accuracy {val}")));
    }
    for (key, value) in fields {
        println!("{key:<11}{value}");
    }
    println!();
    let rows: Vec<Vec<String>> = m
        .parameters
        .iter()
        .map(|p| {
            let shape = p.shape.iter().map(u32::to_string).collect::<Vec<_>>();
            vec![p.name.clone(), shape.join("×")]
        })
        .collect();
    print!("{}", table(&["PARAMETER", "SHAPE"], &rows));
    if args.values {
        for p in &m.parameters {
            println!(
                "\n{} [{}]",
                p.name,
                p.shape
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("×")
            );
            if let Some(t) = &p.value {
                print_values(&p.shape, &values(t));
            }
        }
    }
    Ok(())
}

pub async fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let channel = client::connect(&args.server, CONNECT_TIMEOUT).await?;
    let mut trainer = client::trainer(channel);
    let ids: Vec<String> = if args.all {
        let (models, _) = all_models(&mut trainer, "").await?;
        let ids: Vec<String> = models.into_iter().map(|m| m.model_id).collect();
        if !args.yes && !ids.is_empty() && !confirm(&format!("delete all {} models?", ids.len()))? {
            return Err(CliError::Usage("nothing deleted".into()));
        }
        ids
    } else {
        let mut resolved = Vec::with_capacity(args.ids.len());
        for id in &args.ids {
            resolved.push(resolve(&mut trainer, id).await?);
        }
        resolved
    };
    for id in &ids {
        trainer
            .delete_model(routed(pb::DeleteModelRequest {
                model_id: id.clone(),
            }))
            .await
            .map_err(CliError::rpc("DeleteModel"))?;
        if !args.json {
            println!("deleted {id}");
        }
    }
    if args.json {
        println!("{}", json!({ "deleted": ids }));
    } else if ids.is_empty() {
        println!("no models");
    }
    Ok(())
}

/// Asks `question` on the terminal; true for "y" or "yes". Without a terminal to ask
/// on, refuses (scripts say --yes).
fn confirm(question: &str) -> Result<bool, CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "{question} Not asked without a terminal: add --yes"
        )));
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|source| CliError::Read {
            path: "standard input".into(),
            source,
        })?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The full id `given` names: itself when it is one, else the one model of the caller's
/// whose id starts with it or whose name it is (an error names none or several).
pub async fn resolve(
    trainer: &mut TrainerClient<Connection>,
    given: &str,
) -> Result<String, CliError> {
    if crate::session::SessionId::parse(given).is_some() {
        return Ok(given.to_string());
    }
    let (models, _) = all_models(trainer, "").await?;
    pick(&models, given)
}

/// The one model of `models` that `given` names by id prefix or by name.
fn pick(models: &[pb::ModelSummary], given: &str) -> Result<String, CliError> {
    let named = |m: &pb::ModelSummary| m.metadata.as_ref().is_some_and(|a| a.name == given);
    let matching: Vec<&str> = models
        .iter()
        .filter(|m| m.model_id.starts_with(given) || named(m))
        .map(|m| m.model_id.as_str())
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(CliError::Usage(format!(
            "no model is named {given:?} or has an id that starts with it"
        ))),
        several => Err(CliError::Usage(format!(
            "{given:?} names {} models ({}…): give more of an id",
            several.len(),
            several[..several.len().min(3)].join(", ")
        ))),
    }
}

/// A creation time as UTC date and time and how long ago ("unknown" for 0).
fn created_text(unix_seconds: f64) -> String {
    if unix_seconds <= 0.0 {
        return "unknown (saved before creation times were kept)".into();
    }
    let secs = unix_seconds as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC ({} ago)",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        age(unix_seconds)
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the well-known
/// days-to-civil conversion of H. Hinnant's date algorithms).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A wire tensor's numbers as f64, whichever field carries them.
fn values(t: &pb::Tensor) -> Vec<f64> {
    if t.values_f64.is_empty() {
        t.values.iter().map(|&v| f64::from(v)).collect()
    } else {
        t.values_f64.clone()
    }
}

/// One matrix row per line (a vector on one line), in aligned scientific notation.
fn print_values(shape: &[u32], values: &[f64]) {
    let cols = match shape {
        [_, c] => (*c as usize).max(1),
        _ => values.len().max(1),
    };
    for row in values.chunks(cols) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>12.5e}")).collect();
        println!("{}", cells.join(" "));
    }
}
