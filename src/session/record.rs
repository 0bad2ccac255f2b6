//! What a session keeps beside its model, and every checkpoint of it carries as JSON
//! metadata (ExportModel's file and the state directory's alike): its history and the
//! metadata people set. One place reads and writes both, so an export, an import, a
//! save and a restore all keep the same things.
use std::collections::HashMap;

use super::about::About;
use super::history::History;

/// Metadata key holding the model's history.
pub const KEY_HISTORY: &str = "history";
/// Metadata key holding the model's name, labels, creation time and dataset.
pub const KEY_ABOUT: &str = "about";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub history: History,
    pub about: About,
}

impl Record {
    /// A new model's record: no history yet, and `about`.
    pub fn new(about: About) -> Record {
        Record {
            history: History::default(),
            about,
        }
    }

    /// The metadata entries a checkpoint carries for this record.
    pub fn to_metadata(&self) -> [(&'static str, String); 2] {
        [
            (KEY_HISTORY, self.history.to_json()),
            (KEY_ABOUT, self.about.to_json()),
        ]
    }

    /// The record a checkpoint carries, from its metadata entries; a missing entry is
    /// the empty value (files written before it was kept), a bad one is refused with its
    /// key.
    pub fn from_metadata(
        extra: &HashMap<String, String>,
    ) -> Result<Record, (&'static str, String)> {
        let history = match extra.get(KEY_HISTORY) {
            Some(json) => History::from_json(json).map_err(|e| (KEY_HISTORY, e))?,
            None => History::default(),
        };
        let about = match extra.get(KEY_ABOUT) {
            Some(json) => About::from_json(json).map_err(|e| (KEY_ABOUT, e))?,
            None => About::default(),
        };
        Ok(Record { history, about })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::history::StepPoint;

    #[test]
    fn a_record_round_trips_through_checkpoint_metadata() {
        let mut record = Record::new(
            About::new("w1".into(), [("team".into(), "ml".into())].into(), 7.0).unwrap(),
        );
        record.history.record_step(StepPoint {
            step: 1,
            data_loss: Some(2.0),
            reg_loss: Some(0.5),
            accuracy: Some(0.25),
            learning_rate: 0.1,
            time: 8.0,
        });
        let extra: HashMap<String, String> = record
            .to_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(Record::from_metadata(&extra).unwrap(), record);
        assert_eq!(
            Record::from_metadata(&HashMap::new()).unwrap(),
            Record::default()
        );
        let bad: HashMap<String, String> = [(KEY_ABOUT.to_string(), r#"{"name":1}"#.into())].into();
        assert_eq!(Record::from_metadata(&bad).unwrap_err().0, KEY_ABOUT);
    }
}
