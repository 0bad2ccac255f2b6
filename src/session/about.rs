//! What people call a model and how they find it again among many: a name, labels, when
//! it was created and the dataset its last fit trained on (the API's `ModelMetadata`).
//! Kept with the session and in its checkpoints (JSON metadata beside the history), so
//! ExportModel/ImportModel, `migrate` and a restart keep it; never read by the math.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 128;
/// Labels one model carries at most.
pub const MAX_LABELS: usize = 64;
/// The longest label key, in bytes (ASCII only).
pub const MAX_KEY_BYTES: usize = 63;
/// The longest label value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 256;
/// The longest JSON a checkpoint's `about` entry may have: the name and every label at
/// their longest, each byte escaped (`\"`, 2 bytes; control characters are refused), is
/// under 40 KiB.
pub const MAX_ABOUT_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct About {
    /// Free text for people; need not be unique. Empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Sorted by key, so listings and files come out the same every time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Seconds since the Unix epoch; 0 for a model saved before creation times were kept.
    #[serde(default)]
    pub created: f64,
    /// The training dataset of the model's last fit; empty if it never ran one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataset: String,
}

/// A name or label that cannot be kept, with the request field it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AboutError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> AboutError {
    AboutError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What one metadata change asks for: `None` leaves the name as it is, `Some("")`
/// removes it; `set` adds or replaces labels, `remove` drops them (a key the model
/// does not carry is ignored, so a retried call does the same).
#[derive(Debug, Clone, Default)]
pub struct AboutChange {
    pub name: Option<String>,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl About {
    /// A new model's: `name` and `labels` checked, created now.
    pub fn new(
        name: String,
        labels: BTreeMap<String, String>,
        created: f64,
    ) -> Result<About, AboutError> {
        let about = About {
            name,
            labels,
            created,
            dataset: String::new(),
        };
        about.check("name", "labels")?;
        Ok(about)
    }

    /// This metadata with `change` applied, checked as a whole; `self` is untouched, so
    /// a refused change leaves the model as it was.
    pub fn changed(&self, change: AboutChange) -> Result<About, AboutError> {
        let mut next = self.clone();
        for key in &change.remove {
            if change.set.contains_key(key) {
                return Err(refuse(
                    format!("remove_labels[{key:?}]"),
                    "the same key is also in set_labels; a call either sets or removes it",
                ));
            }
            next.labels.remove(key);
        }
        next.labels.extend(change.set);
        if let Some(name) = change.name {
            next.name = name;
        }
        next.check("name", "set_labels")?;
        Ok(next)
    }

    /// Whether the model has this exact `name` (when one is asked for) and carries every
    /// label of `labels` with the same value.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (name.is_empty() || self.name == name)
            && labels.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Metadata from a checkpoint's JSON, checked as a request's would be.
    pub fn from_json(json: &str) -> Result<About, String> {
        if json.len() > MAX_ABOUT_BYTES {
            return Err(format!(
                "{} bytes of JSON, more than the {MAX_ABOUT_BYTES} a model's metadata takes",
                json.len()
            ));
        }
        let about: About = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if !(about.created.is_finite() && about.created >= 0.0) {
            return Err(format!("created is {}, not a time", about.created));
        }
        about.check("name", "labels").map_err(|e| e.to_string())?;
        Ok(about)
    }

    fn check(&self, name_field: &str, labels_field: &str) -> Result<(), AboutError> {
        check_text(&self.name, MAX_NAME_BYTES).map_err(|r| refuse(name_field, r))?;
        check_label_count(self.labels.len()).map_err(|r| refuse(labels_field, r))?;
        for (key, value) in &self.labels {
            let field = format!("{labels_field}[{key:?}]");
            check_key(key).map_err(|r| refuse(&field, r))?;
            check_text(value, MAX_VALUE_BYTES).map_err(|r| refuse(&field, r))?;
        }
        Ok(())
    }
}

/// At most [`MAX_LABELS`] labels; the service also asks it of a request's maps before
/// it looks at what they hold.
pub fn check_label_count(n: usize) -> Result<(), String> {
    if n > MAX_LABELS {
        return Err(format!(
            "{n} labels, more than the {MAX_LABELS} a model may carry"
        ));
    }
    Ok(())
}

/// A label key: 1 to 63 letters, digits, `-`, `_` or `.`, starting and ending with a
/// letter or digit (as Kubernetes' label names, so the same keys work in both).
pub fn check_key(key: &str) -> Result<(), String> {
    let b = key.as_bytes();
    if b.is_empty() || b.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a label key has 1 to {MAX_KEY_BYTES} characters, this one {}",
            b.len()
        ));
    }
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    if !b.iter().all(inner)
        || !b[0].is_ascii_alphanumeric()
        || !b[b.len() - 1].is_ascii_alphanumeric()
    {
        return Err(format!(
            "the key {key:?} is not letters, digits, '-', '_' and '.' starting and ending \
             with a letter or digit"
        ));
    }
    Ok(())
}

/// A name or label value: at most `max` bytes, no control characters, no spaces at
/// either end (they would be invisible in every listing).
fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{} bytes, more than {max}", text.len()));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("{text:?} holds the control character {c:?}"));
    }
    if text.trim() != text {
        return Err(format!("{text:?} starts or ends with a space"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_change_is_checked_whole_and_leaves_the_original_alone() {
        let about = About::new(
            "digits".into(),
            labels(&[("team", "ml"), ("run", "3")]),
            5.0,
        )
        .unwrap();
        let next = about
            .changed(AboutChange {
                name: Some("digits v2".into()),
                set: labels(&[("run", "4")]),
                remove: vec!["team".into(), "absent".into()],
            })
            .unwrap();
        assert_eq!(next.name, "digits v2");
        assert_eq!(next.labels, labels(&[("run", "4")]));
        assert_eq!(next.created, 5.0);
        let bad = about.changed(AboutChange {
            name: None,
            set: labels(&[("ok", "1"), ("-bad", "2")]),
            remove: vec![],
        });
        assert_eq!(bad.unwrap_err().field, "set_labels[\"-bad\"]");
        let both = about.changed(AboutChange {
            name: None,
            set: labels(&[("run", "5")]),
            remove: vec!["run".into()],
        });
        assert_eq!(both.unwrap_err().field, "remove_labels[\"run\"]");
        assert_eq!(about.labels, labels(&[("run", "3"), ("team", "ml")]));
    }

    #[test]
    fn names_keys_and_values_are_refused_at_their_limits() {
        assert!(About::new("x".repeat(MAX_NAME_BYTES), BTreeMap::new(), 0.0).is_ok());
        let long = About::new("x".repeat(MAX_NAME_BYTES + 1), BTreeMap::new(), 0.0);
        assert_eq!(long.unwrap_err().field, "name");
        assert!(About::new(" padded".into(), BTreeMap::new(), 0.0).is_err());
        assert!(About::new("tab\there".into(), BTreeMap::new(), 0.0).is_err());
        for key in ["", "-a", "a-", "a b", "a/b", &"k".repeat(MAX_KEY_BYTES + 1)] {
            assert!(check_key(key).is_err(), "{key:?}");
        }
        for key in ["a", "A.b_c-1", &"k".repeat(MAX_KEY_BYTES)] {
            assert!(check_key(key).is_ok(), "{key:?}");
        }
        let value = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(About::new(String::new(), labels(&[("k", &value)]), 0.0).is_err());
        let many: BTreeMap<_, _> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_eq!(
            About::new(String::new(), many, 0.0).unwrap_err().field,
            "labels"
        );
    }

    #[test]
    fn the_json_round_trips_and_the_largest_fits_its_bound() {
        let about = About::new("n".into(), labels(&[("a", "1")]), 1.5e9).unwrap();
        assert_eq!(About::from_json(&about.to_json()).unwrap(), about);
        assert_eq!(About::from_json("{}").unwrap(), About::default());
        let worst: BTreeMap<_, _> = (0..MAX_LABELS)
            .map(|i| (format!("{i:0>63}"), "\\".repeat(MAX_VALUE_BYTES)))
            .collect();
        let json = About {
            name: "\"".repeat(MAX_NAME_BYTES),
            labels: worst,
            created: 1.0,
            dataset: "d".repeat(96),
        };
        let json = json.to_json();
        assert!(json.len() <= MAX_ABOUT_BYTES, "{}", json.len());
        assert!(About::from_json(&json).is_ok());
        assert!(About::from_json(r#"{"name":" x"}"#).is_err());
        assert!(About::from_json(r#"{"created":-1}"#).is_err());
    }

    #[test]
    fn matching_asks_for_the_exact_name_and_every_label() {
        let about = About::new("a".into(), labels(&[("x", "1"), ("y", "2")]), 0.0).unwrap();
        assert!(about.matches("", &BTreeMap::new()));
        assert!(about.matches("a", &labels(&[("x", "1")])));
        assert!(!about.matches("b", &BTreeMap::new()));
        assert!(!about.matches("", &labels(&[("x", "2")])));
        assert!(!about.matches("", &labels(&[("z", "1")])));
    }
}
