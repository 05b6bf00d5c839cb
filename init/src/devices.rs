//! The hardware as it appears: drivers loaded by modalias for new devices (the coldplug a
//! udev would do) and the block devices they bring, polled until what a boot step waits
//! for is there.

use crate::blockdev::Devices;
use crate::modules::{Background, Modules};
use anyhow::Result;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

/// What the device wait drives: drivers for new hardware, and the devices they bring.
pub struct Hardware {
    pub modules: Modules,
    pub devices: Devices,
    /// The load list, loading on another thread until the boot device is found.
    pub loading: Option<Background>,
}

impl Hardware {
    /// Waits for the background module load: filesystems and device-mapper are needed next.
    pub fn settle(&mut self) {
        if let Some(b) = self.loading.take() {
            self.modules.join(b);
        }
    }
}

/// Polls until `found` returns something or `timeout` passes (`None` then), loading drivers
/// for new hardware as it appears; `found` refreshes the block devices when it looks at them
/// (a wait for a network interface does not). The timeout counts from when the drivers for
/// the hardware present at the start are in: on a loaded machine loading them alone can take
/// longer than a short `iso.timeout`.
pub fn poll<T>(
    timeout: Duration,
    waiting_for: &str,
    hw: &mut Hardware,
    mut found: impl FnMut(&mut Devices) -> Result<Option<T>>,
) -> Result<Option<T>> {
    hw.modules.coldplug();
    let start = Instant::now();
    let mut announced = false;
    loop {
        if let Some(t) = found(&mut hw.devices)? {
            return Ok(Some(t));
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Ok(None);
        }
        if !announced && waited > Duration::from_secs(1) {
            crate::info!("waiting up to {} s for {waiting_for}", timeout.as_secs());
            announced = true;
        }
        crate::wait::tick(POLL);
        hw.modules.coldplug();
    }
}
