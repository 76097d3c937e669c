//! The wizard's colours, in both themes, and the contrast they are held to: every text colour
//! the wizard draws (body, weak notes, the steps list, the three statuses, the buttons' text)
//! against every background it draws them on is at least 4.5:1 (WCAG 2.x AA for body text),
//! computed by `contrast` from the colours themselves. egui's own weak text (the body colour at
//! 60 % alpha) measured 2.6 to 3.0:1 on the snapshots; it is replaced here.
//!
//! Disabled controls (a greyed Next) are drawn faded by egui, and are outside WCAG's rule
//! (1.4.3 exempts inactive components); the footer says in words why Next is greyed.

use ad_sync_core::preflight::Status;
use egui::{Color32, Theme, Ui, Visuals};

/// The colours of one theme that egui does not choose well enough.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    pub weak: Color32,
    pub pass: Color32,
    pub warn: Color32,
    pub fail: Color32,
}

pub fn palette(dark: bool) -> Palette {
    if dark {
        Palette {
            weak: Color32::from_gray(178),
            pass: Color32::from_rgb(110, 210, 120),
            warn: Color32::from_rgb(240, 190, 70),
            fail: Color32::from_rgb(255, 128, 118),
        }
    } else {
        Palette {
            weak: Color32::from_gray(88),
            pass: Color32::from_rgb(16, 110, 36),
            warn: Color32::from_rgb(140, 80, 0),
            fail: Color32::from_rgb(176, 18, 18),
        }
    }
}

/// Sets both themes' colours (called once, when the window opens).
pub fn apply(ctx: &egui::Context) {
    for theme in [Theme::Light, Theme::Dark] {
        ctx.style_mut_of(theme, |s| {
            style(&mut s.visuals);
            s.spacing.item_spacing = egui::vec2(8.0, 6.0);
        });
    }
}

/// The wizard's changes to a theme's visuals.
pub fn style(v: &mut Visuals) {
    let p = palette(v.dark_mode);
    v.weak_text_color = Some(p.weak);
    // Body text a little stronger than egui's default grey in both themes.
    let body = if v.dark_mode {
        Color32::from_gray(215)
    } else {
        Color32::from_gray(40)
    };
    v.widgets.noninteractive.fg_stroke.color = body;
    v.widgets.inactive.fg_stroke.color = body;
    if !v.dark_mode {
        v.hyperlink_color = Color32::from_rgb(0, 84, 180);
    }
}

/// `top` (premultiplied, maybe translucent or additive, as egui's faint fill is) painted over
/// the opaque `bottom`: the colour on screen.
pub fn over(top: Color32, bottom: Color32) -> Color32 {
    let keep = 1.0 - top.a() as f32 / 255.0;
    let mix = |t: u8, b: u8| (t as f32 + b as f32 * keep).round().min(255.0) as u8;
    Color32::from_rgb(
        mix(top.r(), bottom.r()),
        mix(top.g(), bottom.g()),
        mix(top.b(), bottom.b()),
    )
}

/// The header's and footer's background: the faint fill over the page.
pub fn band(v: &Visuals) -> Color32 {
    over(v.faint_bg_color, v.panel_fill)
}

pub fn status(ui: &Ui, s: Status) -> Color32 {
    let p = palette(ui.visuals().dark_mode);
    match s {
        Status::Pass => p.pass,
        Status::Warn => p.warn,
        Status::Fail => p.fail,
        Status::Skip => ui.visuals().weak_text_color(),
    }
}

pub fn fail(ui: &Ui) -> Color32 {
    palette(ui.visuals().dark_mode).fail
}

/// WCAG 2.x contrast ratio of two opaque colours (1 to 21).
pub fn contrast(a: Color32, b: Color32) -> f32 {
    fn channel(c: u8) -> f32 {
        let c = c as f32 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    }
    fn luminance(c: Color32) -> f32 {
        0.2126 * channel(c.r()) + 0.7152 * channel(c.g()) + 0.0722 * channel(c.b())
    }
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

/// Every (text, background) pair the wizard draws in `v`, named: what the contrast test
/// measures. Backgrounds: the page (panel), the header and footer (faint), the steps list and
/// text fields (extreme), dialogs (window) and buttons (inactive, hovered, pressed).
pub fn pairs(v: &Visuals) -> Vec<(String, Color32, Color32)> {
    let p = palette(v.dark_mode);
    let texts = [
        ("body", v.text_color()),
        ("weak", v.weak_text_color()),
        ("strong", v.strong_text_color()),
        ("pass", p.pass),
        ("warn", p.warn),
        ("fail", p.fail),
        ("hyperlink", v.hyperlink_color),
    ];
    let backgrounds = [
        ("page", v.panel_fill),
        ("header and footer", band(v)),
        ("steps and fields", v.extreme_bg_color),
        ("dialog", v.window_fill),
    ];
    let mut out = Vec::new();
    for (tn, t) in texts {
        for (bn, b) in backgrounds {
            out.push((format!("{tn} text on the {bn}"), t, b));
        }
    }
    for (state, w) in [
        ("button", &v.widgets.inactive),
        ("hovered button", &v.widgets.hovered),
        ("pressed button", &v.widgets.active),
    ] {
        out.push((format!("{state} text"), w.fg_stroke.color, w.weak_bg_fill));
        out.push((
            format!("{state} text (filled)"),
            w.fg_stroke.color,
            w.bg_fill,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_of_known_pairs() {
        assert!((contrast(Color32::BLACK, Color32::WHITE) - 21.0).abs() < 0.01);
        assert!((contrast(Color32::WHITE, Color32::WHITE) - 1.0).abs() < 0.01);
        // #767676 on white is the classic 4.54:1.
        let r = contrast(Color32::from_gray(0x76), Color32::WHITE);
        assert!((r - 4.54).abs() < 0.02, "{r}");
    }

    /// Every text the wizard draws is at least 4.5:1 against where it is drawn, in both themes
    /// (the ratio is the colours', the same at 1x, 1.5x and 2x).
    #[test]
    fn every_text_is_at_least_4_5_to_1_in_both_themes() {
        let mut low = Vec::new();
        for mut v in [Visuals::light(), Visuals::dark()] {
            style(&mut v);
            for (name, text, bg) in pairs(&v) {
                let r = contrast(text, bg);
                if r < 4.5 {
                    low.push(format!(
                        "{} theme: {name}: {r:.2}:1 ({text:?} on {bg:?})",
                        if v.dark_mode { "dark" } else { "light" }
                    ));
                }
            }
        }
        assert!(low.is_empty(), "under 4.5:1:\n{}", low.join("\n"));
    }
}
