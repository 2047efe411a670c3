//! Pictures people read: training curves, attention maps, sweep summaries. Text is drawn with DejaVu Sans,
//! embedded in the binary, so pictures look the same on every machine.

pub mod attention;
pub mod attribution;
pub mod comparison;
pub mod curves;
pub mod heatmap;
pub mod html;
pub mod sweep;

use std::sync::Once;

/// The font family name to use in plotters text styles.
pub(crate) const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub(crate) fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use plotters::style::FontStyle;
        let fonts = [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())];
        for (style, bytes) in fonts {
            assert!(plotters::style::register_font(FONT, style, bytes).is_ok(), "embedded DejaVu Sans is a valid font");
        }
    });
}

/// The format a picture is written in, from its file name (`--out`): png, svg or html.
pub(crate) fn picture_format(path: &std::path::Path) -> anyhow::Result<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => Ok("png"),
        Some("svg") => Ok("svg"),
        Some("html") => Ok("html"),
        _ => crate::error::refuse!("{}: --out must end in .png, .svg or .html", path.display()),
    }
}
