//! Command actions for a TV, checked before anything is sent, and the ADB
//! service each one becomes (§5 of the ADB document).

use super::telemetry::is_package;
use std::fmt;

/// A checked TV command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Key(u16),
    Power(PowerOp),
    Volume(VolumeOp),
    /// HDMI 1–4.
    Input(u8),
    Launch(String),
    Reboot,
    Screenshot,
    Logs,
    Shell(String),
    Relay(RelayOp),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOp {
    On,
    Off,
    Toggle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeOp {
    Set(u32),
    Up,
    Down,
    Mute,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayOp {
    On,
    Off,
    Cycle,
}

/// The actions, for a technician who typed a wrong one.
pub const ACTIONS: &str = "key NAME-OR-CODE, power on|off|toggle, volume N|up|down|mute, \
     input hdmi1..hdmi4, launch PACKAGE, reboot, screenshot, logs, shell CMD, relay on|off|cycle";

/// Key names (without `KEYCODE_`), case-insensitive, and their codes.
const KEYS: &[(&str, u16)] = &[
    ("power", 26),
    ("wakeup", 224),
    ("sleep", 223),
    ("home", 3),
    ("back", 4),
    ("menu", 82),
    ("up", 19),
    ("down", 20),
    ("left", 21),
    ("right", 22),
    ("center", 23),
    ("ok", 23),
    ("volume_up", 24),
    ("volume_down", 25),
    ("mute", 164),
    ("play_pause", 85),
    ("play", 126),
    ("pause", 127),
    ("stop", 86),
    ("next", 87),
    ("previous", 88),
    ("rewind", 89),
    ("fast_forward", 90),
    ("tv_input", 178),
    ("hdmi1", 243),
    ("hdmi2", 244),
    ("hdmi3", 245),
    ("hdmi4", 246),
    ("settings", 176),
    ("search", 84),
    ("enter", 66),
];

/// Why an action was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("no action `{0}`; actions: {ACTIONS}")]
    Unknown(String),
    #[error("`{action}` needs {want}")]
    Usage {
        action: &'static str,
        want: &'static str,
    },
    #[error(
        "unknown key `{0}`: give a key code (0 to 400) or a name such as home, back, up, ok, volume_up, mute, hdmi1"
    )]
    Key(String),
    #[error("`{0}` is not an Android package name (like com.example.app)")]
    Package(String),
    #[error("shell commands are off for this TV: set `allow_shell = true` in its [[tv]] section")]
    ShellOff,
    #[error(
        "this TV has no relay: add `relay = {{ chip = \"gpiochip0\", line = N }}` to its [[tv]] section"
    )]
    NoRelay,
}

impl Action {
    /// Reads `ACTION ARGS...` as typed by a technician or sent upstream.
    pub fn parse(
        action: &str,
        args: &[String],
        allow_shell: bool,
        has_relay: bool,
    ) -> Result<Action, ActionError> {
        let one = |want| match args {
            [a] => Ok(a.to_ascii_lowercase()),
            _ => Err(ActionError::Usage {
                action: static_name(action),
                want,
            }),
        };
        let none = || {
            if args.is_empty() {
                Ok(())
            } else {
                Err(ActionError::Usage {
                    action: static_name(action),
                    want: "no arguments",
                })
            }
        };
        Ok(match action {
            "key" => Action::Key(key_code(&one("a key name or code")?)?),
            "power" => Action::Power(match one("on, off or toggle")?.as_str() {
                "on" => PowerOp::On,
                "off" => PowerOp::Off,
                "toggle" => PowerOp::Toggle,
                _ => return Err(usage("power", "on, off or toggle")),
            }),
            "volume" => Action::Volume(match one("a level, up, down or mute")?.as_str() {
                "up" => VolumeOp::Up,
                "down" => VolumeOp::Down,
                "mute" => VolumeOp::Mute,
                n => VolumeOp::Set(
                    n.parse()
                        .ok()
                        .filter(|&n| n <= 1000)
                        .ok_or_else(|| usage("volume", "a level, up, down or mute"))?,
                ),
            }),
            "input" => {
                let a = one("hdmi1, hdmi2, hdmi3 or hdmi4")?;
                match a.strip_prefix("hdmi").and_then(|n| n.parse::<u8>().ok()) {
                    Some(n @ 1..=4) => Action::Input(n),
                    _ => return Err(usage("input", "hdmi1, hdmi2, hdmi3 or hdmi4")),
                }
            }
            "launch" => {
                let [pkg] = args else {
                    return Err(usage("launch", "one package name"));
                };
                if !is_package(pkg) {
                    return Err(ActionError::Package(pkg.clone()));
                }
                Action::Launch(pkg.clone())
            }
            "reboot" => {
                none()?;
                Action::Reboot
            }
            "screenshot" => {
                none()?;
                Action::Screenshot
            }
            "logs" => {
                none()?;
                Action::Logs
            }
            "shell" => {
                if !allow_shell {
                    return Err(ActionError::ShellOff);
                }
                if args.is_empty() {
                    return Err(usage("shell", "a command"));
                }
                Action::Shell(args.join(" "))
            }
            "relay" => {
                if !has_relay {
                    return Err(ActionError::NoRelay);
                }
                Action::Relay(match one("on, off or cycle")?.as_str() {
                    "on" => RelayOp::On,
                    "off" => RelayOp::Off,
                    "cycle" => RelayOp::Cycle,
                    _ => return Err(usage("relay", "on, off or cycle")),
                })
            }
            other => return Err(ActionError::Unknown(other.to_string())),
        })
    }
}

fn usage(action: &'static str, want: &'static str) -> ActionError {
    ActionError::Usage { action, want }
}

fn static_name(action: &str) -> &'static str {
    [
        "key",
        "power",
        "volume",
        "input",
        "launch",
        "reboot",
        "screenshot",
        "logs",
        "shell",
        "relay",
    ]
    .into_iter()
    .find(|a| *a == action)
    .unwrap_or("action")
}

fn key_code(s: &str) -> Result<u16, ActionError> {
    if let Ok(n) = s.parse::<u16>() {
        return if n <= 400 {
            Ok(n)
        } else {
            Err(ActionError::Key(s.to_string()))
        };
    }
    let name = s.strip_prefix("keycode_").unwrap_or(s);
    KEYS.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| ActionError::Key(s.to_string()))
}

/// What the TV task does for an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// A shell command; its exit status decides the result.
    Shell(String),
    /// `exec:` for binary output (PNG).
    Screenshot,
    /// The `reboot:` service: the connection drops afterwards.
    Reboot,
    Relay(RelayOp),
}

/// The SDK level from which `cmd media_session volume` replaces `media volume`.
const SDK_MEDIA_SESSION: u32 = 30;

impl Action {
    /// The plan for a TV on Android `sdk` (if known).
    pub fn plan(&self, sdk: Option<u32>) -> Plan {
        let shell = |s: String| Plan::Shell(s);
        match self {
            Action::Key(code) => shell(format!("input keyevent {code}")),
            // WAKEUP and SLEEP are idempotent, unlike POWER (§5).
            Action::Power(PowerOp::On) => shell("input keyevent 224".into()),
            Action::Power(PowerOp::Off) => shell("input keyevent 223".into()),
            Action::Power(PowerOp::Toggle) => shell("input keyevent 26".into()),
            Action::Volume(VolumeOp::Up) => shell("input keyevent 24".into()),
            Action::Volume(VolumeOp::Down) => shell("input keyevent 25".into()),
            Action::Volume(VolumeOp::Mute) => shell("input keyevent 164".into()),
            Action::Volume(VolumeOp::Set(n)) => {
                let new = format!("cmd media_session volume --show --stream 3 --set {n}");
                let old = format!("media volume --show --stream 3 --set {n}");
                match sdk {
                    Some(s) if s >= SDK_MEDIA_SESSION => shell(new),
                    Some(_) => shell(old),
                    // Not known yet: `media` is gone from 11, `cmd` new in 7.
                    None => shell(format!("{new} || {old}")),
                }
            }
            Action::Input(n) => shell(format!("input keyevent {}", 242 + u16::from(*n))),
            Action::Launch(pkg) => shell(format!(
                "monkey -p {pkg} -c android.intent.category.LEANBACK_LAUNCHER --pct-syskeys 0 1"
            )),
            Action::Reboot => Plan::Reboot,
            Action::Screenshot => Plan::Screenshot,
            Action::Logs => shell("logcat -d -t 200".into()),
            Action::Shell(cmd) => shell(cmd.clone()),
            Action::Relay(op) => Plan::Relay(*op),
        }
    }
}

impl fmt::Display for RelayOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayOp::On => "on",
            RelayOp::Off => "off",
            RelayOp::Cycle => "cycle",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(action: &str, args: &[&str]) -> Result<Action, ActionError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Action::parse(action, &args, false, false)
    }

    #[test]
    fn every_action_of_the_issue_parses_and_plans() {
        let cases: &[(&str, &[&str], Plan)] = &[
            ("key", &["HOME"], Plan::Shell("input keyevent 3".into())),
            (
                "key",
                &["KEYCODE_BACK"],
                Plan::Shell("input keyevent 4".into()),
            ),
            ("key", &["85"], Plan::Shell("input keyevent 85".into())),
            ("power", &["on"], Plan::Shell("input keyevent 224".into())),
            ("power", &["off"], Plan::Shell("input keyevent 223".into())),
            (
                "power",
                &["toggle"],
                Plan::Shell("input keyevent 26".into()),
            ),
            ("volume", &["up"], Plan::Shell("input keyevent 24".into())),
            (
                "volume",
                &["mute"],
                Plan::Shell("input keyevent 164".into()),
            ),
            (
                "input",
                &["hdmi3"],
                Plan::Shell("input keyevent 245".into()),
            ),
            ("reboot", &[], Plan::Reboot),
            ("screenshot", &[], Plan::Screenshot),
            ("logs", &[], Plan::Shell("logcat -d -t 200".into())),
        ];
        for (action, args, plan) in cases {
            assert_eq!(
                &parse(action, args).unwrap().plan(Some(30)),
                plan,
                "{action} {args:?}"
            );
        }
        assert_eq!(
            parse("volume", &["7"]).unwrap().plan(Some(29)),
            Plan::Shell("media volume --show --stream 3 --set 7".into())
        );
        assert_eq!(
            parse("volume", &["7"]).unwrap().plan(None),
            Plan::Shell(
                "cmd media_session volume --show --stream 3 --set 7 || media volume --show --stream 3 --set 7"
                    .into()
            )
        );
        assert_eq!(
            parse("volume", &["7"]).unwrap().plan(Some(33)),
            Plan::Shell("cmd media_session volume --show --stream 3 --set 7".into())
        );
        assert!(matches!(
            parse("launch", &["com.netflix.ninja"]).unwrap().plan(None),
            Plan::Shell(s) if s.starts_with("monkey -p com.netflix.ninja ")
        ));
    }

    #[test]
    fn bad_actions_say_what_is_wrong() {
        assert!(matches!(parse("dance", &[]), Err(ActionError::Unknown(_))));
        assert!(matches!(parse("key", &["nokey"]), Err(ActionError::Key(_))));
        assert!(matches!(parse("key", &["401"]), Err(ActionError::Key(_))));
        assert!(matches!(
            parse("power", &[]),
            Err(ActionError::Usage { .. })
        ));
        assert!(matches!(
            parse("input", &["hdmi5"]),
            Err(ActionError::Usage { .. })
        ));
        assert!(matches!(
            parse("reboot", &["now"]),
            Err(ActionError::Usage { .. })
        ));
        // A package name is checked: it goes into a shell command line.
        assert!(matches!(
            parse("launch", &["com.x;reboot"]),
            Err(ActionError::Package(_))
        ));
        assert_eq!(parse("shell", &["ls"]), Err(ActionError::ShellOff));
        assert_eq!(parse("relay", &["on"]), Err(ActionError::NoRelay));
        let args = vec!["ls".to_string(), "/sdcard".to_string()];
        assert_eq!(
            Action::parse("shell", &args, true, false),
            Ok(Action::Shell("ls /sdcard".into()))
        );
        assert_eq!(
            Action::parse("relay", &["cycle".to_string()], false, true),
            Ok(Action::Relay(RelayOp::Cycle))
        );
        assert!(
            ActionError::Unknown("x".into())
                .to_string()
                .contains("relay on|off|cycle")
        );
    }
}
