//! The worker's compute device: WebGPU (in the `sinkscope-webgpu` build) or the CPU.

use crate::app::state::Backend;
use burn::prelude::Device;

/// The chosen device, its backend name and adapter, and why it is not what was asked for, if so.
pub struct Chosen {
    pub device: Device,
    pub name: &'static str,
    pub adapter: String,
    pub fallback: Option<String>,
}

fn cpu(fallback: Option<String>) -> Chosen {
    Chosen { device: Device::flex(), name: "cpu", adapter: "wasm CPU (burn flex)".into(), fallback }
}

#[cfg(not(feature = "wgpu"))]
pub async fn choose(backend: Option<Backend>, _on_lost: fn(String)) -> Chosen {
    cpu((backend == Some(Backend::Webgpu)).then(|| "This is the CPU build of the worker; WebGPU runs in the other one.".to_string()))
}

#[cfg(not(feature = "wgpu"))]
pub fn lost() -> bool {
    false
}

#[cfg(not(feature = "wgpu"))]
pub fn lose() {}

#[cfg(not(feature = "wgpu"))]
pub fn release() {}

#[cfg(not(feature = "wgpu"))]
pub fn gpu_buffer_bytes() -> Option<[f64; 2]> {
    None
}

#[cfg(feature = "wgpu")]
pub use webgpu::*;

#[cfg(feature = "wgpu")]
mod webgpu {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use wasm_bindgen::prelude::*;

    use super::{cpu, Backend, Chosen, Device};

    #[wasm_bindgen(module = "/www/gpu-meter.js")]
    extern "C" {
        /// Count the bytes of WebGPU buffers from here on (wraps createBuffer/destroy).
        #[wasm_bindgen(js_name = installGpuMeter)]
        fn install_gpu_meter();
        /// [live bytes, peak bytes, live buffers].
        #[wasm_bindgen(js_name = gpuMeter)]
        fn gpu_meter() -> Vec<f64>;
    }

    thread_local! {
        static SETUP: RefCell<Option<burn::tensor::wgpu::WgpuSetup>> = const { RefCell::new(None) };
        /// The current session's `on_lost` (see [`choose`]), for the test hook's fallback.
        static ON_LOST: std::cell::Cell<Option<fn(String)>> = const { std::cell::Cell::new(None) };
    }

    /// Set by the GPU device's lost callback (or the test hook): errors after it mean a lost device.
    static DEVICE_LOST: AtomicBool = AtomicBool::new(false);

    /// Which device is the session's: each `choose` and `release` moves it on, so a device that
    /// an earlier session used cannot report a loss for the current one.
    static CURRENT: AtomicU32 = AtomicU32::new(0);

    pub fn lost() -> bool {
        DEVICE_LOST.load(Ordering::SeqCst)
    }

    /// Test hook: destroy the device, as a driver reset would. The device's lost promise then
    /// reports the loss (`choose`); should it not have settled 10 s later (a CI run once waited
    /// 120 s for it: not reproduced), the hook reports it itself, saying so — the loss is reported
    /// once, whichever comes first.
    pub fn lose() {
        SETUP.with_borrow(|s| {
            if let Some(setup) = s {
                DEVICE_LOST.store(true, Ordering::SeqCst);
                setup.device.destroy();
                let (id, on_lost) = (CURRENT.load(Ordering::SeqCst), ON_LOST.get());
                let later = Closure::once_into_js(move || {
                    if let (true, Some(on_lost)) = (CURRENT.load(Ordering::SeqCst) == id, on_lost) {
                        on_lost("Destroyed by the test hook; the device's lost promise had not settled 10 s later".into());
                    }
                });
                let _ = crate::web::scope().set_timeout_with_callback_and_timeout_and_arguments_0(later.unchecked_ref(), 10_000);
            }
        });
    }

    pub fn release() {
        CURRENT.fetch_add(1, Ordering::SeqCst);
        SETUP.with_borrow_mut(|s| *s = None);
    }

    pub fn gpu_buffer_bytes() -> Option<[f64; 2]> {
        SETUP.with_borrow(|s| s.is_some()).then(|| {
            let m = gpu_meter();
            [m.first().copied().unwrap_or(f64::NAN), m.get(1).copied().unwrap_or(f64::NAN)]
        })
    }

    /// WebGPU unless the CPU is asked for. (The page starts this build only for a hardware adapter,
    /// or when WebGPU is asked for by name; see `workerFor` in www/app.js.)
    ///
    /// `on_lost` runs when the device's `lost` promise settles. A forward in flight on a lost device
    /// may never finish (a buffer map or a work-done callback that never comes), so the loss is
    /// reported from there, not from the forward's error.
    pub async fn choose(backend: Option<Backend>, on_lost: fn(String)) -> Chosen {
        if backend == Some(Backend::Cpu) {
            return cpu(None);
        }
        install_gpu_meter();
        match Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => {
                let info = setup.adapter.get_info();
                let adapter = format!("{} ({:?})", info.name, info.backend);
                DEVICE_LOST.store(false, Ordering::SeqCst);
                let id = CURRENT.fetch_add(1, Ordering::SeqCst) + 1;
                setup.device.set_device_lost_callback(move |reason, message| {
                    if CURRENT.load(Ordering::SeqCst) == id {
                        DEVICE_LOST.store(true, Ordering::SeqCst);
                        on_lost(format!("{reason:?}: {message}"));
                    }
                });
                SETUP.with_borrow_mut(|s| *s = Some(setup));
                ON_LOST.set(Some(on_lost));
                Chosen { device, name: "webgpu", adapter, fallback: None }
            }
            Err(e) => {
                let detail = e.to_string();
                let reason = if detail.contains("no adapters") || detail.contains("No suitable graphics adapter") {
                    "this browser offers no WebGPU adapter".to_string()
                } else {
                    detail.chars().take(120).collect()
                };
                web_sys::console::warn_1(&format!("WebGPU initialisation failed: {detail}").into());
                cpu(Some(format!("WebGPU is not available here ({reason}); running on the CPU.")))
            }
        }
    }
}
