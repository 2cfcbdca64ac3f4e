//! The demo's document pipeline: reads every document in /docs, has it rendered through
//! the `example:markdown/render` link, and writes the HTML to /out. It never learns which
//! component answered: the host decides (the plugin, or its fallback when it crashes).

wit_bindgen::generate!({ path: "../../wit/markdown", world: "pipeline", generate_all });

use example::markdown::render::render;

fn main() {
    let mut docs: Vec<_> = std::fs::read_dir("/docs")
        .expect("the pipeline is granted /docs")
        .map(|e| e.expect("listing /docs").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("reading a document");
        let html = render(&text);
        let name = doc.file_stem().unwrap().to_string_lossy().into_owned();
        let out = format!("/out/{name}.html");
        std::fs::write(&out, &html).expect("the pipeline is granted /out");
        println!("{} -> {out} ({} bytes)", doc.display(), html.len());
    }
}
