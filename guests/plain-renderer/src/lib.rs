//! The safe fallback renderer: escapes everything and keeps the text as it is.

wit_bindgen::generate!({ path: "../../wit/markdown", world: "renderer" });

struct Plain;

impl exports::example::markdown::render::Guest for Plain {
    fn render(doc: String) -> String {
        let escaped = doc.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        format!("<!-- rendered by the plain fallback -->\n<pre>{escaped}</pre>\n")
    }
}

export!(Plain);
