//! Renders an SVG (e.g. a run's `chart.svg`) to PNG with resvg and the system fonts, for the
//! README's picture of the comparison chart:
//!
//!   cargo run --release -p ladder-recipe --example svg_to_png -- runs/demo/chart.svg docs/demo-chart.png

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [svg, png] = args.as_slice() else {
        eprintln!("usage: svg_to_png IN.svg OUT.png");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(svg).unwrap_or_else(|e| {
        eprintln!("{svg}: {e}");
        std::process::exit(1);
    });
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_system_fonts();
    let opts = resvg::usvg::Options { fontdb: std::sync::Arc::new(db), ..Default::default() };
    let tree = resvg::usvg::Tree::from_str(&text, &opts).unwrap_or_else(|e| {
        eprintln!("{svg}: {e}");
        std::process::exit(1);
    });
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).expect("a non-empty picture");
    resvg::render(&tree, resvg::tiny_skia::Transform::identity(), &mut pixmap.as_mut());
    if let Err(e) = pixmap.save_png(png) {
        eprintln!("{png}: {e}");
        std::process::exit(1);
    }
}
