use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// A file in a directory of its own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ferrows-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn setting(key: &str) -> &'static Setting {
    SETTINGS.iter().find(|s| s.key == key).unwrap_or_else(|| panic!("no setting {key}"))
}

/// A value of `setting` other than its default, as text (which a flag, a
/// variable and a TOML string or number can all carry).
fn other_value(setting: &Setting) -> (String, toml::Value) {
    let current = setting.get(&Config::default());
    let text = setting.sample();
    let mut scratch = Config::default();
    setting.set(&mut scratch, &text).unwrap_or_else(|e| panic!("{e}"));
    let value = setting.get(&scratch).unwrap();
    assert_ne!(Some(&value), current.as_ref(), "{}: {text} is the default", setting.key);
    (text, value)
}

#[test]
fn every_setting_is_declared_once_with_names_that_follow_one_rule() {
    let mut keys = std::collections::HashSet::new();
    for setting in SETTINGS {
        assert!(keys.insert(setting.key), "{} declared twice", setting.key);
        assert_eq!(setting.env, format!("FERROWS_{}", setting.key.to_uppercase()), "{}", setting.key);
        // The one flag that differs is the historic singular --allowed-origin.
        if setting.key != "allowed_origins" {
            assert_eq!(setting.flag, setting.key.replace('_', "-"), "{}", setting.key);
        }
        assert!(!setting.summary().is_empty(), "{} has no doc comment", setting.key);
    }
}

#[test]
fn every_default_reads_back_as_itself() {
    let defaults = Config::default();
    for setting in SETTINGS {
        let Some(text) = setting.default_text() else {
            assert!(setting.get(&defaults).is_none(), "{} is set by default but shows no default", setting.key);
            continue;
        };
        let mut config = Config::default();
        setting.set(&mut config, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config, defaults, "{}: its default {text:?} reads back as something else", setting.key);
    }
}

/// Every setting can be set from the file and from text (flags and
/// variables are text; `cli` tests that clap hands them over).
#[test]
fn every_setting_is_reachable_from_the_file_and_from_text() {
    for setting in SETTINGS {
        let (text, value) = other_value(setting);
        let mut from_text = Config::default();
        setting.set(&mut from_text, &text).unwrap();
        let mut from_file = Config::default();
        from_file.apply_toml(&format!("{} = {value}", setting.key), "test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_file, from_text, "{}", setting.key);
        assert_ne!(from_file, Config::default(), "{}", setting.key);
    }
}

#[test]
fn print_config_reads_back_as_the_same_configuration() {
    let mut config = Config::demo();
    for setting in SETTINGS.iter().filter(|s| !s.secret) {
        let (text, _) = other_value(setting);
        setting.set(&mut config, &text).unwrap();
    }
    let printed = config.to_toml();
    let mut read = Config::default();
    read.apply_toml(&printed, "printed").unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(read, config, "{printed}");
}

#[test]
fn secrets_are_not_printed() {
    let mut config = Config::default();
    config.auth.api_key = Some("very-secret".into());
    let printed = config.to_toml();
    assert!(!printed.contains("very-secret") && printed.contains("# api_key is set (not shown)"), "{printed}");
}

#[test]
fn the_file_overrides_defaults_and_names_namespaces() {
    let file = TempFile::new(
        "file",
        r#"
port = 9100
api_key = "from-file"
allow_anonymous = false
ping_interval = 5
redis_presence_ttl = 2.5
[namespaces.chat]
presence = true
history_size = 10
[namespaces.news]
publish = false
"#,
    );
    let config = Config::load(Some(&file.0)).unwrap();
    assert_eq!(config.server.port, 9100);
    assert_eq!(config.server.host, Config::default().server.host, "defaults stay");
    assert_eq!(config.auth.api_key.as_deref(), Some("from-file"));
    assert!(!config.auth.allow_anonymous);
    assert_eq!(config.websocket.ping_interval, Duration::from_secs(5));
    assert_eq!(config.broker.redis_presence_ttl, Duration::from_millis(2500));
    assert_eq!(config.namespace("chat").unwrap().history_size, 10);
    assert!(!config.namespace("news").unwrap().publish);
    assert!(config.namespace("").is_some(), "the default namespace always exists");
    assert!(config.namespace("other").is_none(), "unknown when namespaces are configured");
}

#[test]
fn the_example_file_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/serve.example.toml");
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.broker.kind, BrokerKind::Redis);
    assert!(config.namespace("user").unwrap().protected);
    assert!(config.namespace("").is_some_and(|n| !n.publish));
    assert!(config.namespace("other").is_none());
}

#[test]
fn the_library_defaults_have_no_demo() {
    let config = Config::default();
    assert!(config.namespaces.named.is_empty() && !config.namespaces.is_strict());
    assert!(config.namespace("chat").is_some_and(|n| !n.join_leave), "the default namespace's options");
    assert_eq!(config.server.listen_addr().to_string(), "127.0.0.1:8000");
}

#[test]
fn without_a_file_the_demo_is_served() {
    let config = Config::load(None).unwrap();
    assert_eq!(config.server.listen_addr().to_string(), "127.0.0.1:8000");
    assert!(config.auth.allow_anonymous);
    assert!(config.namespace("chat").is_some_and(|n| n.anonymous && n.publish && n.presence && n.join_leave));
    assert!(config.namespace("bench").is_some_and(|n| n.presence && !n.join_leave), "no n² join storms by default");
    assert!(config.auth.api_key.is_none());
    assert_eq!(Config { namespaces: Default::default(), ..config }, Config::default(), "only namespaces differ");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let file = TempFile::new("unknown", "prot = 1\n");
    let error = Config::load(Some(&file.0)).unwrap_err();
    assert!(error.contains("unknown key `prot`, did you mean `port`?"), "{error}");
    assert!(error.contains("serve.toml"), "the file is named: {error}");
    let error = Config::default().apply_toml("[namespaces.chat]\nhistroy_size = 1\n", "f").unwrap_err();
    assert!(error.contains("histroy_size"), "{error}");
    let error = Config::default().apply_toml("[limits]\nmax_message_size = 1\n", "f").unwrap_err();
    assert!(error.contains("unknown key `limits`"), "{error}");
}

#[test]
fn bad_values_are_refused_with_the_key_and_why() {
    let cases = [
        ("port = 70000", "port: 70000 is out of range (0 to 65535)"),
        ("port = \"x\"", "port: expected an integer, found string"),
        ("host = \"nowhere\"", "host: `nowhere` is not an IP address"),
        ("ping_interval = -1", "ping_interval: -1 is not a number of seconds"),
        ("broker = \"kafka\"", "broker: `kafka` is not a broker: memory or redis"),
        ("allow_anonymous = 1", "allow_anonymous: expected true or false, found integer"),
        ("max_request_head_size = 100", "max_request_head_size: 100 is below the minimum, 8192"),
        ("command_burst = 0", "command_burst: 0 is below the minimum, 1"),
        ("allowed_origins = [1]", "allowed_origins: expected strings, found integer"),
    ];
    for (text, message) in cases {
        let error = Config::default().apply_toml(text, "f").unwrap_err();
        assert!(error.starts_with("f: ") && error.contains(message), "{text}: {error}");
    }
    let error = setting("max_connections").set(&mut Config::default(), "lots").unwrap_err();
    assert!(error.starts_with("max_connections: `lots` is not a valid usize"), "{error}");
    let error = setting("connect_timeout").set(&mut Config::default(), "10s").unwrap_err();
    assert_eq!(error, "connect_timeout: `10s` is not a number of seconds");
}

#[test]
fn tls_files_go_together() {
    let mut config = Config::default();
    config.apply_toml("tls_cert = \"/c.pem\"", "f").unwrap();
    assert_eq!(config.check().unwrap_err(), "tls_cert and tls_key go together");
    config.apply_toml("tls_key = \"/k.pem\"", "f").unwrap();
    assert!(config.check().is_ok());
}

#[test]
fn lists_and_unset_values() {
    let mut config = Config::default();
    setting("allowed_origins").set(&mut config, "https://a.example, https://b.example").unwrap();
    assert_eq!(config.server.allowed_origins, ["https://a.example", "https://b.example"]);
    config.apply_toml("allowed_origins = [\"https://c.example\"]", "f").unwrap();
    assert_eq!(config.server.allowed_origins, ["https://c.example"]);
    setting("api_key").set(&mut config, "k").unwrap();
    assert_eq!(config.auth.api_key.as_deref(), Some("k"));
    setting("api_key").set(&mut config, "").unwrap();
    assert_eq!(config.auth.api_key, None, "an empty value unsets");
}

#[test]
fn redis_options_follow_the_settings() {
    let mut config = Config::default();
    assert_eq!(config.broker.redis_options(), ferrows_hub::broker::RedisOptions::default());
    config.apply_toml("redis_prefix = \"app\"\nredis_command_timeout = 0.5", "f").unwrap();
    let options = config.broker.redis_options();
    assert_eq!((options.prefix.as_str(), options.command_timeout), ("app", Duration::from_millis(500)));
}

#[test]
fn permissions_follow_the_namespace_and_the_token() {
    let open = NamespaceConfig::default();
    let closed = NamespaceConfig { anonymous: false, publish: false, ..NamespaceConfig::default() };
    let protected = NamespaceConfig { protected: true, ..NamespaceConfig::default() };
    let granted = vec!["p:mine".to_owned()];
    assert!(open.may_read("", &[], "c") && open.may_publish("", &[], "c"));
    assert!(!closed.may_read("", &[], "c"), "anonymous refused");
    assert!(closed.may_read("al", &[], "c") && !closed.may_publish("al", &[], "c"));
    assert!(!protected.may_read("al", &[], "p:x"), "a protected channel needs a grant");
    assert!(protected.may_read("al", &granted, "p:mine") && protected.may_publish("al", &granted, "p:mine"));
    assert!(!protected.may_read("al", &granted, "p:theirs"));
}

#[test]
fn channel_names() {
    assert!(is_valid_channel("chat:lobby"));
    assert!(is_valid_channel("$sys:stats"));
    assert!(!is_valid_channel(""));
    assert!(!is_valid_channel("has space"));
    assert!(!is_valid_channel(&"a".repeat(256)));
    assert_eq!(namespace_of("chat:lobby:x"), "chat");
    assert_eq!(namespace_of("news"), "");
}

/// The table of `docs/configuration.md`, made from the declaration.
fn settings_table() -> String {
    let mut table =
        String::from("| Key (file) | Flag | Variable | Default | What it does |\n| --- | --- | --- | --- | --- |\n");
    let mut heading = "";
    for setting in SETTINGS {
        if setting.heading != heading {
            heading = setting.heading;
            table.push_str(&format!("| **{heading}** | | | | |\n"));
        }
        let default = match setting.default_text() {
            None => "not set".to_owned(),
            Some(text) => match text.parse::<usize>() {
                Ok(bytes)
                    if bytes >= 1024
                        && bytes % 1024 == 0
                        && ["size", "bytes", "body"].iter().any(|w| setting.key.contains(w)) =>
                {
                    let (n, unit) = if bytes % (1 << 20) == 0 { (bytes >> 20, "MiB") } else { (bytes >> 10, "KiB") };
                    format!("`{text}` ({n} {unit})")
                }
                _ if setting.value_name == "SECONDS" => format!("`{text}` s"),
                _ => format!("`{text}`"),
            },
        };
        let flag = match setting.short {
            Some(short) => format!("`--{}`, `-{short}`", setting.flag),
            None => format!("`--{}`", setting.flag),
        };
        let what = setting.description().replace("\n\n", " ").replace('|', "\\|");
        table.push_str(&format!("| `{}` | {flag} | `{}` | {default} | {what} |\n", setting.key, setting.env));
    }
    table
}

/// `docs/configuration.md` lists every setting with its default, as the
/// declaration says: `FERROWS_UPDATE_DOCS=1 cargo test -p ferrows-server`
/// rewrites its table after a change.
#[test]
fn the_docs_table_is_the_declaration() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
    let start = text.find(begin).expect("the begin marker") + begin.len();
    let stop = text.find(end).expect("the end marker");
    let table = settings_table();
    if text[start..stop] != table {
        if std::env::var_os("FERROWS_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &text[..start], &text[stop..])).unwrap();
        } else {
            panic!("docs/configuration.md's table differs from the declaration; FERROWS_UPDATE_DOCS=1 rewrites it");
        }
    }
}
