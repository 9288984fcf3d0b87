//! Time as a record carries it: wall clock, a monotonic clock, the boot id,
//! and whether the wall clock was synchronised. A single-board computer has no
//! real-time clock, so after a power cut the wall clock may be in 1970 until
//! NTP fixes it; the monotonic time and boot id still order records.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// When a record was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall-clock time, milliseconds since the Unix epoch (may be wrong, see `synced`).
    pub wall_ms: i64,
    /// CLOCK_BOOTTIME in milliseconds: counts through suspend, restarts at boot.
    pub mono_ms: i64,
    /// The kernel said the wall clock was synchronised (NTP) when this was taken.
    pub synced: bool,
}

impl Stamp {
    /// The time now.
    pub fn now() -> Stamp {
        Stamp {
            wall_ms: wall_ms(),
            mono_ms: mono_ms(),
            synced: wall_clock_synced(),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch; negative if the clock is before 1970.
pub fn wall_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Milliseconds of CLOCK_BOOTTIME.
pub fn mono_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    // time_t and c_long are 32 bits on armv7 (armhf): widen before multiplying.
    #[allow(clippy::useless_conversion)] // already i64 on 64-bit targets
    let (secs, nanos) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
    secs * 1000 + nanos / 1_000_000
}

/// Whether the kernel considers the wall clock synchronised (the flag that
/// `timedatectl` shows as "System clock synchronized").
pub fn wall_clock_synced() -> bool {
    // SAFETY: a zeroed timex with modes = 0 only reads the kernel's state.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

/// The kernel's boot id: a new random UUID at every boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Formats wall-clock milliseconds as RFC 3339 UTC (`2026-12-01T08:37:12.345Z`).
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ms(1_796_115_432_345), "2026-12-01T08:57:12.345Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn monotonic_time_advances() {
        let a = mono_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(mono_ms() >= a + 19);
    }

    #[test]
    fn boot_id_is_a_uuid() {
        assert_eq!(boot_id().len(), 36);
    }
}
