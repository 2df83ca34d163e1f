//! How the value of a setting is read from a flag or an environment
//! variable (text), and from the TOML file, and how its default is shown.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::BrokerKind;

/// A type a setting can have.
pub(crate) trait Value: Sized {
    /// What `--help` calls the value.
    const VALUE_NAME: &'static str;
    /// Whether a flag may repeat (the values add up; also comma-separated).
    const MULTIPLE: bool = false;
    /// From a flag or an environment variable.
    fn parse(text: &str) -> Result<Self, String>;
    /// From the TOML file.
    fn from_toml(value: toml::Value) -> Result<Self, String>;
    /// For `--print-config` and the file; `None`: not set.
    fn to_toml(&self) -> Option<toml::Value>;
    /// As `--help` and the docs show it (and [`Value::parse`] reads it
    /// back); `None`: not set.
    fn show(&self) -> Option<String> {
        self.to_toml().map(|value| match value {
            toml::Value::String(text) => text,
            other => other.to_string(),
        })
    }
}

fn expected(what: &str, value: &toml::Value) -> String {
    format!("expected {what}, found {} `{value}`", value.type_str())
}

macro_rules! integer {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            const VALUE_NAME: &'static str = "N";
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().replace('_', "").parse().map_err(|e| format!("`{text}` is not a valid {}: {e}", stringify!($ty)))
            }
            fn from_toml(value: toml::Value) -> Result<Self, String> {
                match value {
                    toml::Value::Integer(n) => n.try_into().map_err(|_| {
                        format!("{n} is out of range (0 to {})", <$ty>::MAX)
                    }),
                    other => Err(expected("an integer", &other)),
                }
            }
            fn to_toml(&self) -> Option<toml::Value> {
                Some(toml::Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX)))
            }
        }
    )*};
}

integer!(u16, u32, usize);

impl Value for bool {
    const VALUE_NAME: &'static str = "BOOL";
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("`{text}` is not true or false")),
        }
    }
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        value.as_bool().ok_or_else(|| expected("true or false", &value))
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Boolean(*self))
    }
}

/// A number of seconds (fractions allowed).
impl Value for Duration {
    const VALUE_NAME: &'static str = "SECONDS";
    fn parse(text: &str) -> Result<Self, String> {
        let seconds: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number of seconds"))?;
        Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is not a number of seconds"))
    }
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        let seconds = match value {
            toml::Value::Float(s) => s,
            toml::Value::Integer(s) => s as f64,
            other => return Err(expected("a number of seconds", &other)),
        };
        Duration::try_from_secs_f64(seconds).map_err(|_| format!("{seconds} is not a number of seconds"))
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(match self.subsec_nanos() {
            0 => toml::Value::Integer(i64::try_from(self.as_secs()).unwrap_or(i64::MAX)),
            _ => toml::Value::Float(self.as_secs_f64()),
        })
    }
}

macro_rules! text {
    ($ty:ty, $name:literal, $what:literal) => {
        impl Value for $ty {
            const VALUE_NAME: &'static str = $name;
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|e| format!("`{text}` is not {}: {e}", $what))
            }
            fn from_toml(value: toml::Value) -> Result<Self, String> {
                match value {
                    toml::Value::String(text) => Self::parse(&text),
                    other => Err(expected($what, &other)),
                }
            }
            fn to_toml(&self) -> Option<toml::Value> {
                Some(toml::Value::String(self.to_string()))
            }
        }
    };
}

text!(IpAddr, "ADDR", "an IP address");
text!(String, "TEXT", "a string");
text!(http::Uri, "URL", "a URL");

impl Value for PathBuf {
    const VALUE_NAME: &'static str = "FILE";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(text) => Ok(PathBuf::from(text)),
            other => Err(expected("a file name", &other)),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(self.display().to_string()))
    }
}

impl Value for BrokerKind {
    const VALUE_NAME: &'static str = "memory|redis";
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(Self::Memory),
            "redis" => Ok(Self::Redis),
            _ => Err(format!("`{text}` is not a broker: memory or redis")),
        }
    }
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(text) => Self::parse(&text),
            other => Err(expected("memory or redis", &other)),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(format!("{self:?}").to_lowercase()))
    }
}

/// Not set by default; an empty value unsets it.
impl<T: Value> Value for Option<T> {
    const VALUE_NAME: &'static str = T::VALUE_NAME;
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() { Ok(None) } else { T::parse(text).map(Some) }
    }
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(text) if text.is_empty() => Ok(None),
            value => T::from_toml(value).map(Some),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        self.as_ref().and_then(T::to_toml)
    }
}

/// A list: comma-separated in a flag (which may also repeat) or a
/// variable, an array (or one string) in the file; empty by default.
impl Value for Vec<String> {
    const VALUE_NAME: &'static str = "TEXT,...";
    const MULTIPLE: bool = true;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect())
    }
    fn from_toml(value: toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(text) => Self::parse(&text),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(text) => Ok(text),
                    other => Err(expected("strings", &other)),
                })
                .collect(),
            other => Err(expected("an array of strings", &other)),
        }
    }
    fn to_toml(&self) -> Option<toml::Value> {
        (!self.is_empty()).then(|| toml::Value::Array(self.iter().cloned().map(toml::Value::String).collect()))
    }
    fn show(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.join(","))
    }
}
