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

/// Polls for devices (loading drivers for new hardware as it appears) until `found`
/// returns something or `timeout` passes; `None` then.
pub fn poll<T>(
    timeout: Duration,
    waiting_for: &str,
    hw: &mut Hardware,
    mut found: impl FnMut(&Devices, Vec<String>) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let start = Instant::now();
    let mut announced = false;
    loop {
        hw.modules.coldplug();
        let fresh = hw.devices.refresh();
        if let Some(t) = found(&hw.devices, fresh)? {
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
    }
}
