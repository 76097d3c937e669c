//! Choosing the graphics backend the wizard draws with, before its window opens.
//!
//! An installer is run over Remote Desktop, on Server Core with the desktop experience added
//! later, on VMs with a basic display adapter: the first backend wgpu would pick may exist and
//! still fail when it first compiles a shader (Direct3D 12 without a shader compiler, a Vulkan
//! driver that loses its device). A window that dies on its first frame cannot be retried in the
//! same process (winit creates one event loop per process), so each backend is probed here,
//! headless, by doing what the first frame does: an adapter, a device, a shader module and a
//! render pipeline. The first one that does all of it without an error is handed to eframe.
//!
//! What this module does not do: draw, or choose between adapters of one backend (wgpu's own
//! power preference does that).

use eframe::egui_wgpu::wgpu;
use std::time::Duration;

/// One backend tried, and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub backend: &'static str,
    /// The adapter it reached (`llvmpipe`, `Microsoft Basic Render Driver`), or why it failed.
    pub outcome: Result<String, String>,
}

/// The backends to try, most capable first for this platform. `WGPU_BACKEND` (wgpu's own
/// variable: `dx12`, `vulkan`, `gl`, or a comma list) narrows the list for an administrator
/// who knows what their server has.
pub fn candidates() -> Vec<(&'static str, wgpu::Backends)> {
    let all: &[(&'static str, wgpu::Backends)] = if cfg!(windows) {
        &[
            ("Direct3D 12", wgpu::Backends::DX12),
            ("Vulkan", wgpu::Backends::VULKAN),
            ("OpenGL", wgpu::Backends::GL),
        ]
    } else if cfg!(target_os = "macos") {
        &[("Metal", wgpu::Backends::METAL)]
    } else {
        &[
            ("Vulkan", wgpu::Backends::VULKAN),
            ("OpenGL", wgpu::Backends::GL),
        ]
    };
    match wgpu::Backends::from_env() {
        Some(wanted) => all
            .iter()
            .copied()
            .filter(|(_, b)| wanted.contains(*b))
            .collect(),
        None => all.to_vec(),
    }
}

/// Tries each candidate in order and returns the first that works, with every attempt made
/// (for the log, and for the message when none works).
pub fn choose() -> (Option<wgpu::Backends>, Vec<Attempt>) {
    let mut attempts = Vec::new();
    for (name, backends) in candidates() {
        let outcome = probe(backends);
        let ok = outcome.is_ok();
        attempts.push(Attempt {
            backend: name,
            outcome,
        });
        if ok {
            return (Some(backends), attempts);
        }
    }
    (None, attempts)
}

/// The sentence shown when no backend could draw: what was tried, and what to do.
pub fn none_worked(attempts: &[Attempt]) -> String {
    let tried = if attempts.is_empty() {
        "no graphics backend matches WGPU_BACKEND".to_string()
    } else {
        attempts
            .iter()
            .map(|a| match &a.outcome {
                Ok(adapter) => format!("{} ({adapter}): worked", a.backend),
                Err(why) => format!("{}: {why}", a.backend),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "no graphics backend could draw the wizard's window (tried: {tried}). Install the display adapter's driver, or unset WGPU_BACKEND if it is set; on a server without a desktop, use `ad-sync-setup install --answers FILE` instead (see --help)"
    )
}

/// Does what the first frame does, headless: adapter, device, shader, pipeline. Any error on
/// the way (including the device being lost) fails the backend.
fn probe(backends: wgpu::Backends) -> Result<String, String> {
    // Each probe runs on its own thread so a driver that hangs costs a bounded wait, not the
    // installer: the thread is left behind and the next backend is tried.
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("adsync-gpu-probe".into())
        .spawn(move || {
            let result =
                std::panic::catch_unwind(move || pollster::block_on(probe_inner(backends)))
                    .unwrap_or_else(|_| Err("the driver panicked while being probed".into()));
            tx.send(result).ok();
        });
    if let Err(e) = spawned {
        return Err(format!("could not start the probe: {e}"));
    }
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r,
        Err(_) => Err("did not answer within 20 s".into()),
    }
}

async fn probe_inner(backends: wgpu::Backends) -> Result<String, String> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        flags: wgpu::InstanceFlags::from_build_config().with_env(),
        backend_options: wgpu::BackendOptions::from_env_or_default(),
        memory_budget_thresholds: wgpu::MemoryBudgetThresholds::default(),
        display: None,
    });
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("no adapter ({e})"))?;
    let info = adapter.get_info();
    let name = if info.name.is_empty() {
        format!("{:?}", info.backend)
    } else {
        info.name.clone()
    };
    let (device, _queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("ad-sync renderer probe"),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{name}: no device ({e})"))?;
    let lost = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let lost_in = lost.clone();
    device.set_device_lost_callback(move |_, message| {
        if let Ok(mut l) = lost_in.lock() {
            *l = Some(message);
        }
    });
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("probe"),
        source: wgpu::ShaderSource::Wgsl(PROBE_SHADER.into()),
    });
    let _pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("probe"),
        layout: None,
        vertex: wgpu::VertexState {
            module: &shader,
            entry_point: Some("vs_main"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: wgpu::PrimitiveState::default(),
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &shader,
            entry_point: Some("fs_main"),
            compilation_options: Default::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format: wgpu::TextureFormat::Bgra8Unorm,
                blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    });
    // Scopes pop in the reverse order they were pushed.
    if let Some(e) = internal.pop().await {
        return Err(format!("{name}: {}", first_line(&e.to_string())));
    }
    if let Some(e) = validation.pop().await {
        return Err(format!("{name}: {}", first_line(&e.to_string())));
    }
    device.poll(wgpu::PollType::Poll).ok();
    if let Some(message) = lost.lock().ok().and_then(|l| l.clone()) {
        return Err(format!("{name}: the device was lost ({message})"));
    }
    Ok(name)
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// A triangle with a colour: enough to make a backend compile a vertex and a fragment stage.
const PROBE_SHADER: &str = r#"
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let x = f32(i32(i) - 1);
    let y = f32(i32(i & 1u) * 2 - 1);
    return vec4<f32>(x, y, 0.0, 1.0);
}

@fragment
fn fs_main() -> @location(0) vec4<f32> {
    return vec4<f32>(0.2, 0.4, 0.8, 1.0);
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_was_tried_when_nothing_draws() {
        let text = none_worked(&[
            Attempt {
                backend: "Direct3D 12",
                outcome: Err("llvmpipe: Internal error in ShaderStages(VERTEX | FRAGMENT) shader: FXC D3DCompile error".into()),
            },
            Attempt {
                backend: "Vulkan",
                outcome: Err("no adapter (no suitable adapter found)".into()),
            },
        ]);
        assert!(
            text.contains("Direct3D 12: llvmpipe: Internal error"),
            "{text}"
        );
        assert!(text.contains("Vulkan: no adapter"), "{text}");
        assert!(text.contains("install --answers FILE"), "{text}");
        assert!(none_worked(&[]).contains("WGPU_BACKEND"));
    }
}
