//! A third-party Markdown plugin, untrusted: it gets no grants at all and sees only the
//! text it is handed through the link. Its parser has a bug: raw HTML makes it panic.

wit_bindgen::generate!({ path: "../../wit/markdown", world: "renderer" });

struct Fancy;

impl exports::example::markdown::render::Guest for Fancy {
    fn render(doc: String) -> String {
        // What the plugin could reach if it tried: nothing.
        let env = std::env::vars().count();
        let files = match std::fs::read_to_string("/etc/passwd") {
            Ok(_) => "readable",
            Err(_) => "denied",
        };
        let mut html = format!("<!-- rendered by the fancy plugin; it sees {env} env vars; files: {files} -->\n");
        for line in doc.lines() {
            if line.contains('<') {
                panic!("fancy renderer: raw HTML is not supported: {line:?}");
            }
            let (tag, text) = match line.trim_start_matches('#') {
                rest if line.starts_with("## ") => ("h2", rest.trim()),
                rest if line.starts_with("# ") => ("h1", rest.trim()),
                _ if line.trim().is_empty() => continue,
                _ => ("p", line.trim()),
            };
            html.push_str(&format!("<{tag}>{}</{tag}>\n", emphasis(text)));
        }
        html
    }
}

/// `*word*` becomes `<em>word</em>`.
fn emphasis(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('*').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<em>{part}</em>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

export!(Fancy);
