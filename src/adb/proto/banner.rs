//! CNXN banners (§1.4) and features (§1.5).
//!
//! A device says `device::ro.product.name=…;ro.product.model=…;ro.product.device=…;features=…`;
//! the host anything of the form `host::…`. A feature counts only when both
//! banners list it.

use std::collections::BTreeSet;
use std::fmt;

/// Features this core implements and so may offer in the host banner.
/// `delayed_ack` must never be offered unless implemented: adbd would then
/// expect windowed OPENs and count bytes in OKAYs (§1.5).
pub const HOST_FEATURES: &[&str] = &[FEATURE_SHELL_V2];

pub const FEATURE_SHELL_V2: &str = "shell_v2";

/// The first banner field: what the peer is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// A booted Android: the only state with a shell.
    Device,
    Recovery,
    Sideload,
    Rescue,
    Bootloader,
    /// Any `host::…` banner.
    Host,
    /// A state this code does not know, kept as sent.
    Other(String),
}

impl PeerState {
    fn parse(s: &str) -> PeerState {
        match s {
            "device" => PeerState::Device,
            "recovery" => PeerState::Recovery,
            "sideload" => PeerState::Sideload,
            "rescue" => PeerState::Rescue,
            "bootloader" => PeerState::Bootloader,
            "host" => PeerState::Host,
            other => PeerState::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PeerState::Device => "device",
            PeerState::Recovery => "recovery",
            PeerState::Sideload => "sideload",
            PeerState::Rescue => "rescue",
            PeerState::Bootloader => "bootloader",
            PeerState::Host => "host",
            PeerState::Other(s) => s,
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of feature names, as in `features=shell_v2,cmd`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features(BTreeSet<String>);

impl Features {
    pub fn new<I, S>(names: I) -> Features
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Features(
            names
                .into_iter()
                .map(Into::into)
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    /// Parses the comma list, skipping empty names.
    pub fn parse(list: &str) -> Features {
        Features::new(list.split(','))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The features both sides list: the only ones either may use.
    pub fn common(&self, other: &Features) -> Features {
        Features(self.0.intersection(&other.0).cloned().collect())
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// A parsed CNXN banner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner {
    pub state: PeerState,
    /// The second field; empty on every adbd we know of.
    pub serial: String,
    /// `key=value` pairs in the order sent, without `features`.
    pub properties: Vec<(String, String)>,
    /// Empty from ≤ 6.0 devices, which send no `features=`.
    pub features: Features,
}

impl Banner {
    /// Reads any banner. Never fails: an odd banner still names a state, and
    /// what cannot be read as `key=value` is skipped.
    pub fn parse(bytes: &[u8]) -> Banner {
        // adb-shell ends its banner with a NUL; adbd does not.
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default());
        let mut pieces = text.splitn(3, ':');
        let state = PeerState::parse(pieces.next().unwrap_or_default());
        let serial = pieces.next().unwrap_or_default().to_string();
        let mut properties = Vec::new();
        let mut features = Features::default();
        // Old devices end with ';': skip the empty pieces.
        for pair in pieces.next().unwrap_or_default().split(';') {
            match pair.split_once('=') {
                Some(("features", list)) => features = Features::parse(list),
                Some((key, value)) if !key.is_empty() => {
                    properties.push((key.to_string(), value.to_string()));
                }
                _ => {}
            }
        }
        Banner {
            state,
            serial,
            properties,
            features,
        }
    }

    /// `host::features=…`, what we send.
    pub fn host(features: Features) -> Banner {
        Banner {
            state: PeerState::Host,
            serial: String::new(),
            properties: Vec::new(),
            features,
        }
    }

    /// A device banner with the three properties adbd sends, for simulators.
    pub fn device(name: &str, model: &str, device: &str, features: Features) -> Banner {
        Banner {
            state: PeerState::Device,
            serial: String::new(),
            properties: vec![
                (PROP_NAME.to_string(), name.to_string()),
                (PROP_MODEL.to_string(), model.to_string()),
                (PROP_DEVICE.to_string(), device.to_string()),
            ],
            features,
        }
    }

    /// The banner bytes, without a NUL.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `ro.product.name`, e.g. `atv_amlogic`.
    pub fn product_name(&self) -> Option<&str> {
        self.property(PROP_NAME)
    }

    /// `ro.product.model`, what the TV's settings call the model.
    pub fn model(&self) -> Option<&str> {
        self.property(PROP_MODEL)
    }

    /// `ro.product.device`, the hardware codename.
    pub fn device_name(&self) -> Option<&str> {
        self.property(PROP_DEVICE)
    }
}

const PROP_NAME: &str = "ro.product.name";
const PROP_MODEL: &str = "ro.product.model";
const PROP_DEVICE: &str = "ro.product.device";

impl fmt::Display for Banner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.state, self.serial)?;
        let mut first = true;
        for (k, v) in &self.properties {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        if !self.features.is_empty() {
            if !first {
                f.write_str(";")?;
            }
            write!(f, "features={}", self.features)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_modern_device_banner() {
        let b = Banner::parse(
            b"device::ro.product.name=sabrina_prod_stable;ro.product.model=Chromecast;ro.product.device=sabrina;features=shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,apex,abb,abb_exec,delayed_ack",
        );
        assert_eq!(b.state, PeerState::Device);
        assert_eq!(b.serial, "");
        assert_eq!(b.product_name(), Some("sabrina_prod_stable"));
        assert_eq!(b.model(), Some("Chromecast"));
        assert_eq!(b.device_name(), Some("sabrina"));
        assert!(b.features.contains("shell_v2"));
        assert!(b.features.contains("delayed_ack"));
        assert!(!b.features.contains("sendrecv_v2"));
        assert_eq!(b.features.iter().count(), 9);
    }

    #[test]
    fn parses_an_old_device_banner_with_trailing_semicolon_and_no_features() {
        let b = Banner::parse(
            b"device::ro.product.name=full_x86;ro.product.model=MiBOX3;ro.product.device=once;",
        );
        assert_eq!(b.state, PeerState::Device);
        assert_eq!(b.model(), Some("MiBOX3"));
        assert_eq!(b.device_name(), Some("once"));
        assert!(b.features.is_empty());
        assert_eq!(b.properties.len(), 3);
    }

    #[test]
    fn other_states_and_odd_banners() {
        assert_eq!(Banner::parse(b"recovery::").state, PeerState::Recovery);
        assert_eq!(Banner::parse(b"sideload::").state, PeerState::Sideload);
        assert_eq!(Banner::parse(b"rescue::").state, PeerState::Rescue);
        assert_eq!(Banner::parse(b"bootloader::").state, PeerState::Bootloader);
        assert_eq!(
            Banner::parse(b"fastbootd::x=1").state,
            PeerState::Other("fastbootd".into())
        );
        // adb-shell's host banner: hostname and a NUL.
        let h = Banner::parse(b"host::pi-site-7\0");
        assert_eq!(h.state, PeerState::Host);
        assert!(h.properties.is_empty());
        // No colon at all, and garbage: still a banner.
        assert_eq!(Banner::parse(b"device").state, PeerState::Device);
        assert_eq!(Banner::parse(&[0xFF, b':', b':', b'=']).properties.len(), 0);
        assert_eq!(Banner::parse(b"").state, PeerState::Other(String::new()));
    }

    #[test]
    fn a_value_may_contain_colons_and_equals() {
        let b = Banner::parse(b"device::ro.x=a:b=c;features=cmd");
        assert_eq!(b.property("ro.x"), Some("a:b=c"));
        assert!(b.features.contains("cmd"));
    }

    #[test]
    fn host_banner_bytes() {
        let b = Banner::host(Features::new(HOST_FEATURES.iter().copied()));
        assert_eq!(b.encode(), b"host::features=shell_v2");
        let b = Banner::host(Features::parse("shell_v2,cmd,stat_v2,ls_v2"));
        assert_eq!(b.encode(), b"host::features=cmd,ls_v2,shell_v2,stat_v2");
        assert_eq!(Banner::host(Features::default()).encode(), b"host::");
    }

    #[test]
    fn device_banner_round_trips() {
        let b = Banner::device("n", "m", "d", Features::parse("shell_v2,cmd"));
        assert_eq!(
            b.encode(),
            b"device::ro.product.name=n;ro.product.model=m;ro.product.device=d;features=cmd,shell_v2"
        );
        assert_eq!(Banner::parse(&b.encode()), b);
    }

    #[test]
    fn common_features_need_both_sides() {
        let host = Features::parse("shell_v2,cmd");
        let dev = Features::parse("cmd,stat_v2,,");
        let both = host.common(&dev);
        assert!(both.contains("cmd"));
        assert!(!both.contains("shell_v2"));
        assert_eq!(both.to_string(), "cmd");
    }
}
