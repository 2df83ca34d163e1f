//! The TOML file: every setting under its key at the top level (as in
//! `docs/serve.example.toml`), and the namespace tables
//! `[default_namespace]` and `[namespaces.NAME]`. Unknown keys and values
//! of the wrong type are errors that name the key.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{Config, NamespaceConfig, SETTINGS};

/// The demo's configuration (`demo/serve.toml`): what `ferrows serve`
/// reads when it is given no configuration file.
pub(super) const DEMO_CONFIG: &str = include_str!("../../demo/serve.toml");

/// The keys of the namespace tables, which are not settings of their own.
const DEFAULT_NAMESPACE: &str = "default_namespace";
const NAMESPACES: &str = "namespaces";

impl Config {
    /// Applies the TOML document `text` over this configuration: what it
    /// sets replaces what was there. `origin` names the document in errors.
    pub fn apply_toml(&mut self, text: &str, origin: &str) -> Result<(), String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        for (key, value) in table {
            let applied = match key.as_str() {
                DEFAULT_NAMESPACE => value
                    .try_into()
                    .map(|namespace| self.namespaces.default = namespace)
                    .map_err(|e| format!("[{DEFAULT_NAMESPACE}]: {e}")),
                NAMESPACES => value
                    .try_into::<HashMap<String, NamespaceConfig>>()
                    .map(|named| self.namespaces.named.extend(named))
                    .map_err(|e| format!("[{NAMESPACES}]: {e}")),
                _ => match SETTINGS.iter().find(|setting| setting.key == key) {
                    Some(setting) => setting.set_from_toml(self, value),
                    None => Err(format!("unknown key `{key}`{}", suggestion(&key))),
                },
            };
            applied.map_err(|e| format!("{origin}: {}", e.trim_end()))?;
        }
        Ok(())
    }

    /// Applies the TOML file at `path` over this configuration.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.apply_toml(&text, &path.display().to_string())
    }

    /// This configuration as a TOML file that sets everything (secrets are
    /// left out, with a comment saying they are set).
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        let mut heading = "";
        for setting in SETTINGS {
            if setting.heading != heading {
                heading = setting.heading;
                let _ = writeln!(text, "{}# {heading}", if text.is_empty() { "" } else { "\n" });
            }
            match setting.get(self) {
                Some(_) if setting.secret => {
                    let _ = writeln!(text, "# {} is set (not shown)", setting.key);
                }
                Some(value) => {
                    let _ = writeln!(text, "{} = {value}", setting.key);
                }
                None => {
                    let _ = writeln!(text, "# {} is not set", setting.key);
                }
            }
        }
        #[derive(Serialize)]
        struct Tables<'a> {
            default_namespace: &'a NamespaceConfig,
            namespaces: &'a HashMap<String, NamespaceConfig>,
        }
        let tables = Tables { default_namespace: &self.namespaces.default, namespaces: &self.namespaces.named };
        text.push('\n');
        text.push_str(&toml::to_string(&tables).expect("namespace options serialize"));
        text
    }
}

/// ", did you mean `port`?" when a key is close to `key`.
fn suggestion(key: &str) -> String {
    let keys = SETTINGS.iter().map(|setting| setting.key).chain([DEFAULT_NAMESPACE, NAMESPACES]);
    let closest = keys.map(|known| (edit_distance(key, known), known)).min();
    match closest {
        Some((distance, known)) if distance <= 2 || known.contains(key) => format!(", did you mean `{known}`?"),
        _ => " (the keys are listed in docs/configuration.md)".to_owned(),
    }
}

/// Levenshtein distance, by bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.bytes().enumerate() {
            let next = (diagonal + usize::from(x != y)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
