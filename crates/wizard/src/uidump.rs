//! What is on screen, for a test driving the real window from outside (xdotool under Xvfb):
//! with `AD_SYNC_SETUP_UI_DUMP=FILE`, every frame whose content changed is written to FILE as
//! JSON, from the same AccessKit tree a screen reader gets: each named node's role, name, its
//! rectangle in the window's pixels, and whether it is disabled or focused. A text field's
//! value is included, except a secret field's (the password, the connect key, even while "Show
//! key" shows it), which never reaches the file.
//!
//! The file is replaced atomically, so a reader never sees half of it.

use egui::accesskit;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// The environment variable naming the file.
pub const ENV: &str = "AD_SYNC_SETUP_UI_DUMP";

pub struct UiDump {
    path: PathBuf,
    last: Option<String>,
}

impl UiDump {
    pub fn new(path: PathBuf) -> UiDump {
        UiDump { path, last: None }
    }
}

#[derive(serde::Serialize)]
struct Shown<'a> {
    /// Physical pixels per logical point.
    ppp: f32,
    /// The window's drawable size in physical pixels.
    width: f32,
    height: f32,
    frame: u64,
    nodes: Vec<Named<'a>>,
}

#[derive(serde::Serialize)]
struct Named<'a> {
    role: String,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    disabled: bool,
    focused: bool,
}

impl egui::Plugin for UiDump {
    fn debug_name(&self) -> &'static str {
        "ad-sync-ui-dump"
    }

    fn setup(&mut self, ctx: &egui::Context) {
        ctx.enable_accesskit();
    }

    fn output_hook(&mut self, ctx: &egui::Context, output: &mut egui::FullOutput) {
        // eframe turns AccessKit off when no screen reader asked; this keeps it on.
        ctx.enable_accesskit();
        let Some(update) = &output.platform_output.accesskit_update else {
            return;
        };
        let by_id: HashMap<accesskit::NodeId, &accesskit::Node> =
            update.nodes.iter().map(|(id, n)| (*id, n)).collect();
        let mut nodes = Vec::new();
        for (id, node) in &update.nodes {
            // The runs of a text field's own text (its value is on the field).
            if node.role() == accesskit::Role::TextRun {
                continue;
            }
            let Some(b) = node.bounds() else { continue };
            let linked = || {
                node.labelled_by()
                    .iter()
                    .filter_map(|l| by_id.get(l))
                    .find_map(|l| l.label().or(l.value()))
            };
            let text_input = matches!(
                node.role(),
                accesskit::Role::TextInput | accesskit::Role::PasswordInput
            );
            let name = node
                .label()
                .or_else(linked)
                .or(if text_input { None } else { node.value() })
                .unwrap_or_default();
            if name.trim().is_empty() {
                continue;
            }
            nodes.push(Named {
                role: format!("{:?}", node.role()),
                name,
                // A secret field's text stays out of the file even while it is shown.
                value: if text_input
                    && node.role() != accesskit::Role::PasswordInput
                    && ![
                        crate::widgets::PASSWORD_FIELD,
                        crate::widgets::CONNECT_KEY_FIELD,
                    ]
                    .contains(&name)
                {
                    node.value()
                } else {
                    None
                },
                x0: b.x0,
                y0: b.y0,
                x1: b.x1,
                y1: b.y1,
                disabled: node.is_disabled(),
                focused: update.focus == *id,
            });
        }
        let ppp = ctx.pixels_per_point();
        let size = ctx.content_rect().size() * ppp;
        let shown = Shown {
            ppp,
            width: size.x,
            height: size.y,
            frame: 0,
            nodes,
        };
        let Ok(text) = serde_json::to_string(&shown) else {
            return;
        };
        if self.last.as_deref() == Some(text.as_str()) {
            return;
        }
        // The frame number tells a reader that a new frame was drawn, not only a new content.
        let numbered = serde_json::to_string(&Shown {
            frame: ctx.cumulative_frame_nr(),
            ..shown
        })
        .unwrap_or_default();
        if let Err(e) = write(&self.path, &numbered) {
            tracing::warn!("{ENV}: cannot write {}: {e}", self.path.display());
        }
        self.last = Some(text);
    }
}

fn write(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
