//! The `settings!` macro: each setting of `ferrows serve` is declared once
//! (field, type, default, documentation, TOML key, flag, environment
//! variable), and the macro makes of that declaration the sections of
//! [`Config`](super::Config), their defaults, and [`SETTINGS`](super::SETTINGS),
//! the table that the file reader, the command line (`cli` feature),
//! `--print-config`, the docs check and the tests all iterate.

use super::Config;

/// One setting of `ferrows serve`: where it lives in [`Config`], its name
/// in each source, what it does and its default.
#[derive(Clone, Copy)]
pub struct Setting {
    /// The section of [`Config`] (`limits`).
    pub section: &'static str,
    /// The field of that section (`max_message_size`).
    pub field: &'static str,
    /// Its key in the TOML file (top level, like every key but the
    /// namespace tables).
    pub key: &'static str,
    /// Its command-line flag, without the `--`.
    pub flag: &'static str,
    /// A one-letter form of the flag.
    pub short: Option<char>,
    /// Its environment variable.
    pub env: &'static str,
    /// The heading it is listed under in `--help` and the docs.
    pub heading: &'static str,
    /// Its documentation, line by line (the field's doc comment).
    pub doc: &'static [&'static str],
    /// What `--help` calls its value (`SECONDS`).
    pub value_name: &'static str,
    /// Whether the flag may repeat, the values adding up.
    pub multiple: bool,
    /// Whether the value is secret: not shown by `--print-config` nor in
    /// `--help`'s `[env: ...]`.
    pub secret: bool,
    pub(crate) default: fn() -> Option<String>,
    pub(crate) get: fn(&Config) -> Option<toml::Value>,
    pub(crate) set_text: fn(&mut Config, &str) -> Result<(), String>,
    pub(crate) set_toml: fn(&mut Config, toml::Value) -> Result<(), String>,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting").field("key", &self.key).field("flag", &self.flag).field("env", &self.env).finish()
    }
}

impl Setting {
    /// The default as `--help` and the docs show it; `None`: not set.
    pub fn default_text(&self) -> Option<String> {
        (self.default)()
    }

    /// The first paragraph of the documentation, on one line.
    pub fn summary(&self) -> String {
        let lines = self.doc.iter().map(|line| line.trim()).take_while(|line| !line.is_empty());
        lines.collect::<Vec<_>>().join(" ")
    }

    /// The whole documentation, paragraphs kept.
    pub fn description(&self) -> String {
        let text = self.doc.iter().map(|line| line.trim()).collect::<Vec<_>>().join("\n");
        text.split("\n\n").map(|paragraph| paragraph.replace('\n', " ")).collect::<Vec<_>>().join("\n\n")
    }

    /// Sets it in `config` from text, as a flag or a variable gives it.
    pub fn set(&self, config: &mut Config, text: &str) -> Result<(), String> {
        (self.set_text)(config, text).map_err(|e| format!("{}: {e}", self.key))
    }

    /// Sets it in `config` from a value of the TOML file.
    pub(crate) fn set_from_toml(&self, config: &mut Config, value: toml::Value) -> Result<(), String> {
        (self.set_toml)(config, value).map_err(|e| format!("{}: {e}", self.key))
    }

    /// A value other than the default, as text (for tests that set every
    /// setting).
    #[doc(hidden)]
    pub fn sample(&self) -> String {
        let default = self.default_text();
        match self.value_name {
            "N" => default.and_then(|n| n.parse::<u64>().ok()).map_or(7, |n| n + 7).to_string(),
            "SECONDS" => "123.5".into(),
            "BOOL" if default.as_deref() == Some("true") => "false".into(),
            "BOOL" => "true".into(),
            "ADDR" => "0.0.0.0".into(),
            "URL" => format!("https://backend.example/{}", self.key),
            "FILE" => format!("/etc/ferrows/{}.pem", self.key),
            "memory|redis" => "redis".into(),
            _ => format!("value-of-{}", self.key),
        }
    }

    /// Its value in `config`, as the file would say it; `None`: not set.
    pub(crate) fn get(&self, config: &Config) -> Option<toml::Value> {
        (self.get)(config)
    }
}

/// Checks a value read for a setting against its minimum.
pub(crate) fn at_least<T: PartialOrd + super::value::Value>(value: T, min: T) -> Result<T, String> {
    if value < min {
        let show = |v: &T| v.show().unwrap_or_default();
        Err(format!("{} is below the minimum, {}", show(&value), show(&min)))
    } else {
        Ok(value)
    }
}

/// Declares the configuration: sections of settings, each setting once.
///
/// ```text
/// /// What the setting does, and why its default is what it is.
/// field: Type = DEFAULT; key = "toml_key", flag = "flag-name", env = "FERROWS_NAME"
///     [, min = MIN] [, secret = true];
/// ```
macro_rules! settings {
    (
        $(#[doc = $config_doc:literal])*
        pub struct $Config:ident {
            $(
                $(#[doc = $section_doc:literal])*
                $section:ident: $Section:ident ($heading:literal) {
                    $(
                        $(#[doc = $doc:literal])*
                        $field:ident: $ty:ty = $default:expr;
                            key = $key:literal, flag = $flag:literal $(, short = $short:literal)?, env = $env:literal
                            $(, min = $min:expr)? $(, secret = $secret:literal)?;
                    )*
                } $(+ {
                    $(
                        $(#[doc = $extra_doc:literal])*
                        $extra:ident: $extra_ty:ty
                    ),* $(,)?
                })?
            )*
        }
    ) => {
        $(#[doc = $config_doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $Config {
            $(
                $(#[doc = $section_doc])*
                pub $section: $Section,
            )*
        }

        $(
            $(#[doc = $section_doc])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $Section {
                $(
                    $(#[doc = $doc])*
                    #[doc = ""]
                    #[doc = concat!("Key `", $key, "`, flag `--", $flag, "`, variable `", $env, "`.")]
                    pub $field: $ty,
                )*
                $($(
                    $(#[doc = $extra_doc])*
                    pub $extra: $extra_ty,
                )*)?
            }

            impl Default for $Section {
                fn default() -> Self {
                    Self {
                        $($field: $default,)*
                        $($($extra: Default::default(),)*)?
                    }
                }
            }
        )*

        /// Every setting, section by section, in the order of `--help`.
        pub static SETTINGS: &[$crate::config::Setting] = &[
            $($(
                $crate::config::Setting {
                    section: stringify!($section),
                    field: stringify!($field),
                    key: $key,
                    flag: $flag,
                    short: { #[allow(unused_mut, unused_assignments)] let mut short = None; $(short = Some($short);)? short },
                    env: $env,
                    heading: $heading,
                    doc: &[$($doc),*],
                    value_name: <$ty as $crate::config::value::Value>::VALUE_NAME,
                    multiple: <$ty as $crate::config::value::Value>::MULTIPLE,
                    secret: { #[allow(unused_mut, unused_assignments)] let mut secret = false; $(secret = $secret;)? secret },
                    default: || {
                        let default: $ty = $default;
                        $crate::config::value::Value::show(&default)
                    },
                    get: |config| $crate::config::value::Value::to_toml(&config.$section.$field),
                    set_text: |config, text| {
                        let value = <$ty as $crate::config::value::Value>::parse(text)?;
                        $(let value = $crate::config::declare::at_least(value, $min)?;)?
                        config.$section.$field = value;
                        Ok(())
                    },
                    set_toml: |config, toml| {
                        let value = <$ty as $crate::config::value::Value>::from_toml(toml)?;
                        $(let value = $crate::config::declare::at_least(value, $min)?;)?
                        config.$section.$field = value;
                        Ok(())
                    },
                },
            )*)*
        ];
    };
}

pub(crate) use settings;
