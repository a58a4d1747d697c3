//! Reading the status page in tests: the text a person sees in one element.

/// The text inside the element with this `id` (up to the close of its card or section),
/// tags dropped and white space collapsed.
pub fn text_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{html}"));
    let rest = &html[start..];
    let end = ["</section>", "</div>"]
        .iter()
        .filter_map(|close| rest.find(close))
        .min()
        .unwrap_or(rest.len());
    let mut text = String::new();
    let mut in_tag = false;
    for c in rest[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
