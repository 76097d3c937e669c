//! The setup wizard: the pages an administrator walks through, each value proved against the
//! live domain controller and the cloud on the page where it is typed.
//!
//! `form` holds what was typed (pure), `validate` runs the checks off the UI thread, `backend`
//! is what the checks talk to, `pages` draws one page each, `app` is the window around them.
//! The checks are the preflight ones `ad-sync-setup check` runs; nothing is validated only
//! here.

/// The window's title: the product and its version.
pub const TITLE: &str = concat!("ad-sync setup ", env!("CARGO_PKG_VERSION"));

pub mod app;
pub mod backend;
pub mod form;
pub mod import;
pub mod installer;
pub mod nav;
pub mod pages;
pub mod renderer;
pub mod state;
pub mod theme;
pub mod tree;
pub mod uidump;
pub mod uninstaller;
pub mod validate;
pub mod widgets;

pub use app::{Options, WizardApp};
pub use state::State;

pub use ad_sync_core::install::layout::{default_config_path, elevated};

/// Opens the wizard window and runs it until it closes.
pub fn run(options: Options) -> Result<(), String> {
    let icon = eframe::icon_data::from_png_bytes(include_bytes!("../../../assets/icon.png")).ok();
    let mut viewport = egui::ViewportBuilder::default()
        .with_title(TITLE)
        .with_app_id("ad-sync-setup")
        .with_inner_size([820.0, 620.0])
        .with_min_inner_size([800.0, 600.0]);
    if let Some(icon) = icon {
        viewport = viewport.with_icon(icon);
    }
    let (chosen, attempts) = renderer::choose();
    for a in &attempts {
        match &a.outcome {
            Ok(adapter) => tracing::info!("renderer: {} on {adapter} works", a.backend),
            Err(why) => tracing::warn!("renderer: {} cannot draw here: {why}", a.backend),
        }
    }
    let Some(backends) = chosen else {
        return Err(renderer::none_worked(&attempts));
    };
    let mut native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    if let eframe::egui_wgpu::WgpuSetup::CreateNew(setup) = &mut native.wgpu_options.wgpu_setup {
        setup.instance_descriptor.backends = backends;
    }
    eframe::run_native(
        TITLE,
        native,
        Box::new(move |cc| {
            let app = WizardApp::new(&cc.egui_ctx, options).map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| format!("the wizard window could not open: {e}. On a server without a desktop, use `ad-sync-setup check --answers FILE` (see --help)."))
}
