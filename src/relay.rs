//! Mains power for TVs that ADB cannot wake: a relay in the TV's power lead,
//! driven by one GPIO line through the Linux GPIO character device.
//!
//! `RelayLine` only sets a physical level; `Relay` says which level powers
//! the TV (`active_low`) and times a power cycle. So the logic is tested on a
//! `FakeLine` under tokio's paused clock, without hardware.

use crate::config::RelayConfig;
use gpiocdev::line::Value;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What a line's holder (`gpioinfo`'s "consumer") is called.
const CONSUMER: &str = "sitelink";

/// One GPIO output line.
pub trait RelayLine: Send {
    /// Drives the line high (`true`) or low.
    fn set(&mut self, high: bool) -> Result<(), RelayError>;
}

/// Why a relay could not be taken or switched. Each names the chip and line
/// and what usually fixes it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "GPIO chip {} does not exist (relay line {line}): `gpiodetect` lists the chips; \
         fix `chip` in this TV's relay",
        chip.display()
    )]
    NoChip { chip: PathBuf, line: u32 },
    #[error(
        "{} is not a GPIO chip (relay line {line}): `gpiodetect` lists the chips; \
         fix `chip` in this TV's relay",
        chip.display()
    )]
    NotAChip { chip: PathBuf, line: u32 },
    #[error(
        "no permission to open GPIO chip {} (relay line {line}): the service's user needs \
         access to it; on Raspberry Pi OS add it to the `gpio` group \
         (SupplementaryGroups=gpio in the service)",
        chip.display()
    )]
    Permission { chip: PathBuf, line: u32 },
    #[error(
        "GPIO chip {} has no line {line}: its lines are 0 to {} (`gpioinfo` lists them); \
         fix `line` in this TV's relay",
        chip.display(),
        lines.saturating_sub(1)
    )]
    NoLine {
        chip: PathBuf,
        line: u32,
        lines: u32,
    },
    #[error(
        "relay line {line} of {} is busy: {consumer:?} holds it (`gpioinfo` shows who); \
         free it or wire the relay to another line",
        chip.display()
    )]
    Busy {
        chip: PathBuf,
        line: u32,
        consumer: String,
    },
    #[error(
        "relay line {line} of {} failed: {source} (is the chip still there? `gpiodetect` lists the chips)",
        chip.display()
    )]
    Gpio {
        chip: PathBuf,
        line: u32,
        #[source]
        source: gpiocdev::Error,
    },
}

impl RelayError {
    fn from_gpio(chip: &Path, line: u32, e: gpiocdev::Error) -> Self {
        let chip = chip.to_path_buf();
        match &e {
            gpiocdev::Error::Os(errno) if errno.0 == libc::ENOENT => {
                RelayError::NoChip { chip, line }
            }
            gpiocdev::Error::Os(errno) if matches!(errno.0, libc::EACCES | libc::EPERM) => {
                RelayError::Permission { chip, line }
            }
            gpiocdev::Error::GpioChip(..) => RelayError::NotAChip { chip, line },
            _ => RelayError::Gpio {
                chip,
                line,
                source: e,
            },
        }
    }
}

/// A line of a real GPIO chip, requested as an output once and held until
/// dropped (the kernel gives it back when the process ends).
pub struct GpioLine {
    request: gpiocdev::Request,
    chip: PathBuf,
    line: u32,
}

impl GpioLine {
    /// Requests `line` of `chip` as an output at level `high`: an output
    /// cannot be requested without a level.
    pub fn open(chip: &Path, line: u32, high: bool) -> Result<Self, RelayError> {
        let fail = |e| RelayError::from_gpio(chip, line, e);
        // Checked first so that a wrong number or a line some driver holds
        // gets its own message instead of the request's bare errno.
        let device = gpiocdev::Chip::from_path(chip).map_err(fail)?;
        let lines = device.info().map_err(fail)?.num_lines;
        if line >= lines {
            return Err(RelayError::NoLine {
                chip: chip.to_path_buf(),
                line,
                lines,
            });
        }
        let info = device.line_info(line).map_err(fail)?;
        if info.used {
            return Err(RelayError::Busy {
                chip: chip.to_path_buf(),
                line,
                consumer: info.consumer,
            });
        }
        let request = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer(CONSUMER)
            .with_line(line)
            .as_output(value(high))
            .request()
            .map_err(fail)?;
        Ok(GpioLine {
            request,
            chip: chip.to_path_buf(),
            line,
        })
    }
}

impl RelayLine for GpioLine {
    fn set(&mut self, high: bool) -> Result<(), RelayError> {
        self.request
            .set_lone_value(value(high))
            .map_err(|e| RelayError::from_gpio(&self.chip, self.line, e))
    }
}

/// The line is requested active-high, so `Active` is the high level and
/// `Relay` alone applies `active_low`.
fn value(high: bool) -> Value {
    if high { Value::Active } else { Value::Inactive }
}

/// A line in memory, for tests of code that switches a relay: it records the
/// levels set, in order, and has no clock (tests read time from tokio).
/// Clones share one line, so a test keeps one to look at.
#[derive(Clone, Default)]
pub struct FakeLine {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    levels: Vec<bool>,
    unplugged: bool,
}

impl FakeLine {
    pub fn new() -> Self {
        FakeLine::default()
    }

    /// Every level set so far, oldest first (`true` is high).
    pub fn levels(&self) -> Vec<bool> {
        self.lock().levels.clone()
    }

    /// Makes every later `set` fail as when a USB GPIO adapter is pulled out.
    pub fn unplug(&self) {
        self.lock().unplugged = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        // A test that panicked while holding it left plain data behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RelayLine for FakeLine {
    fn set(&mut self, high: bool) -> Result<(), RelayError> {
        let mut state = self.lock();
        if state.unplugged {
            return Err(RelayError::Gpio {
                chip: PathBuf::from("/dev/gpiochip-fake"),
                line: 0,
                source: io::Error::from_raw_os_error(libc::ENODEV).into(),
            });
        }
        state.levels.push(high);
        Ok(())
    }
}

/// A TV's power relay: `on` means the TV is powered, whatever the wiring.
pub struct Relay<L> {
    line: L,
    active_low: bool,
}

impl Relay<GpioLine> {
    /// Takes the configured line and powers the TV. On, because the request
    /// must set some level and "off" would cut every TV at each agent start.
    pub fn open(config: &RelayConfig) -> Result<Self, RelayError> {
        let line = GpioLine::open(&config.chip, config.line, !config.active_low)?;
        Ok(Relay::new(line, config.active_low))
    }
}

impl RelayLine for Box<dyn RelayLine> {
    fn set(&mut self, high: bool) -> Result<(), RelayError> {
        (**self).set(high)
    }
}

impl<L: RelayLine> Relay<L> {
    /// `active_low`: the TV is powered while the line is low.
    pub fn new(line: L, active_low: bool) -> Self {
        Relay { line, active_low }
    }

    /// The same relay behind a trait object, so a TV task takes a real line
    /// or a test's fake alike.
    pub fn boxed(self) -> Relay<Box<dyn RelayLine>>
    where
        L: 'static,
    {
        Relay {
            line: Box::new(self.line),
            active_low: self.active_low,
        }
    }

    pub fn on(&mut self) -> Result<(), RelayError> {
        self.power(true)
    }

    pub fn off(&mut self) -> Result<(), RelayError> {
        self.power(false)
    }

    fn power(&mut self, on: bool) -> Result<(), RelayError> {
        self.line.set(on != self.active_low)
    }

    /// Power off, wait `off_for`, power on. If the cycle is dropped while
    /// waiting (its task stopped), the power goes back on at once: a cycle
    /// never leaves a TV off.
    pub async fn cycle(&mut self, off_for: Duration) -> Result<(), RelayError> {
        self.off()?;
        let pending = PowerBack(Some(self));
        tokio::time::sleep(off_for).await;
        pending.finish()
    }
}

/// The "on" a cycle still owes.
struct PowerBack<'r, L: RelayLine>(Option<&'r mut Relay<L>>);

impl<L: RelayLine> PowerBack<'_, L> {
    fn finish(mut self) -> Result<(), RelayError> {
        match self.0.take() {
            Some(relay) => relay.on(),
            None => Ok(()),
        }
    }
}

impl<L: RelayLine> Drop for PowerBack<'_, L> {
    fn drop(&mut self) {
        if let Some(relay) = self.0.take()
            && let Err(e) = relay.on()
        {
            tracing::error!(error = %e, "a stopped power cycle could not switch the TV back on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const HIGH: bool = true;
    const LOW: bool = false;

    fn relay(active_low: bool) -> (Relay<FakeLine>, FakeLine) {
        let line = FakeLine::new();
        (Relay::new(line.clone(), active_low), line)
    }

    #[test]
    fn on_is_high_and_off_is_low() {
        let (mut r, line) = relay(false);
        r.on().unwrap();
        r.off().unwrap();
        r.off().unwrap();
        assert_eq!(line.levels(), [HIGH, LOW, LOW]);
    }

    #[test]
    fn active_low_inverts_the_levels() {
        let (mut r, line) = relay(true);
        r.on().unwrap();
        r.off().unwrap();
        assert_eq!(line.levels(), [LOW, HIGH]);
    }

    #[tokio::test(start_paused = true)]
    async fn cycle_is_off_for_the_given_time_then_on() {
        let (mut r, line) = relay(false);
        let start = Instant::now();
        let cycle = tokio::spawn(async move { r.cycle(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert_eq!(line.levels(), [LOW], "still off just before the end");
        cycle.await.unwrap().unwrap();
        assert_eq!(line.levels(), [LOW, HIGH]);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn cycle_with_active_low_is_high_then_low() {
        let (mut r, line) = relay(true);
        r.cycle(Duration::from_secs(2)).await.unwrap();
        assert_eq!(line.levels(), [HIGH, LOW]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_cycle_powers_the_tv_back_at_once() {
        let (mut r, line) = relay(false);
        let start = Instant::now();
        let cut = tokio::time::timeout(Duration::from_secs(3), r.cycle(Duration::from_secs(10)));
        assert!(cut.await.is_err(), "the timeout ends the cycle");
        assert_eq!(line.levels(), [LOW, HIGH]);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cycle_that_cannot_switch_off_fails_at_once() {
        let (mut r, line) = relay(false);
        line.unplug();
        let start = Instant::now();
        let err = r.cycle(Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(err, RelayError::Gpio { .. }), "{err:?}");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "no wait after a failed off"
        );
        assert!(line.levels().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_lost_during_the_cycle_fails_the_cycle() {
        let (mut r, line) = relay(false);
        let watcher = line.clone();
        let cycle = tokio::spawn(async move { r.cycle(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        watcher.unplug();
        let err = cycle.await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("No such device"),
            "the cause is kept: {err}"
        );
        assert_eq!(line.levels(), [LOW]);
    }

    #[test]
    fn a_missing_chip_is_named() {
        let chip = Path::new("/dev/gpiochip999");
        assert!(
            !chip.exists(),
            "this test needs {} to be absent",
            chip.display()
        );
        let config = RelayConfig {
            chip: chip.to_path_buf(),
            line: 17,
            active_low: false,
            cycle_off: Duration::from_secs(10),
        };
        let err = Relay::open(&config).err().expect("no such chip");
        assert!(
            matches!(&err, RelayError::NoChip { chip: c, line: 17 } if c == chip),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "GPIO chip /dev/gpiochip999 does not exist (relay line 17): `gpiodetect` lists the chips; \
             fix `chip` in this TV's relay"
        );
    }

    #[test]
    fn a_file_that_is_not_a_chip_is_named() {
        let file = tempfile::NamedTempFile::new().unwrap();
        for path in [file.path(), Path::new("/dev/null")] {
            let err = GpioLine::open(path, 0, true).err().expect("not a chip");
            assert!(
                matches!(&err, RelayError::NotAChip { chip, line: 0 } if chip == path),
                "{}: {err:?}",
                path.display()
            );
        }
    }

    #[test]
    fn permission_errors_suggest_the_gpio_group() {
        for errno in [libc::EACCES, libc::EPERM] {
            let os = gpiocdev::Error::from(io::Error::from_raw_os_error(errno));
            let err = RelayError::from_gpio(Path::new("/dev/gpiochip0"), 17, os);
            assert!(matches!(err, RelayError::Permission { .. }), "{err:?}");
            assert!(err.to_string().contains("`gpio` group"), "{err}");
        }
    }
}
