//! The command line of `ferrows serve` (feature `cli`): [`ServeArgs`], a
//! clap argument group made from [`SETTINGS`], one flag and one
//! environment variable per setting, with its default and its doc comment
//! as help, under its section's heading.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::{Config, SETTINGS, Setting};

/// The arguments of `ferrows serve`: the configuration file, and the
/// settings that flags or `FERROWS_*` variables gave (a flag wins over
/// its variable).
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file (`--config`, `FERROWS_CONFIG`); `None`:
    /// the demo's.
    pub config: Option<PathBuf>,
    /// Print the configuration and exit (`--print-config`).
    pub print_config: bool,
    /// The settings given, with their text.
    pub given: Vec<(&'static Setting, String)>,
}

impl ServeArgs {
    /// The configuration: the defaults, then the file (the demo's when
    /// none is named), then what the environment and the flags give,
    /// checked ([`Config::check`]).
    pub fn resolve(&self) -> Result<Config, String> {
        let config = self.merge()?;
        config.check()?;
        Ok(config)
    }

    /// The configuration, not checked: what `--print-config` prints.
    pub fn merge(&self) -> Result<Config, String> {
        let mut config = Config::load(self.config.as_deref())?;
        for (setting, text) in &self.given {
            let source = format!("--{} / {}", setting.flag, setting.env);
            setting.set(&mut config, text).map_err(|e| format!("{source}: {e}"))?;
        }
        Ok(config)
    }
}

/// The flag of `setting`.
fn arg(setting: &'static Setting) -> Arg {
    let mut arg = Arg::new(setting.key)
        .long(setting.flag)
        .env(setting.env)
        .hide_env_values(setting.secret)
        .value_name(setting.value_name)
        .help(setting.summary())
        .long_help(setting.description())
        .help_heading(setting.heading)
        .value_parser(move |text: &str| (setting.set_text)(&mut Config::default(), text).map(|()| text.to_owned()));
    if let Some(short) = setting.short {
        arg = arg.short(short);
    }
    if let Some(default) = setting.default_text() {
        arg = arg.default_value(default);
    }
    if setting.multiple { arg.action(ArgAction::Append).value_delimiter(',') } else { arg.action(ArgAction::Set) }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("FERROWS_CONFIG")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML configuration file (the environment and flags override it) [default: the demo's]"),
            )
            .arg(
                Arg::new("print_config")
                    .long("print-config")
                    .action(ArgAction::SetTrue)
                    .help("Print the configuration (file, environment and flags merged) as TOML, and exit"),
            );
        SETTINGS.iter().fold(cmd, |cmd, setting| cmd.arg(arg(setting)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = SETTINGS
            .iter()
            .filter(|setting| {
                matches!(matches.value_source(setting.key), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            })
            .map(|setting| {
                let values: Vec<&str> =
                    matches.get_many::<String>(setting.key).into_iter().flatten().map(String::as_str).collect();
                (setting, values.join(","))
            })
            .collect();
        Ok(Self {
            config: matches.get_one::<PathBuf>("config").cloned(),
            print_config: matches.get_flag("print_config"),
            given,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
