//! Just enough Markdown for the checks: fenced code blocks, headings (with
//! GitHub's anchor slugs), sections and inline links.

/// A fenced code block (```lang ... ```), or a heading, of a page, in page order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// `lang` is the info string's first word (`bash`, `json`, ...).
    Code {
        lang: String,
        text: String,
        line: usize,
    },
    /// `level` is the number of `#`.
    Heading { level: usize, text: String },
}

/// The fenced code blocks and headings of `page`, in order. Headings inside
/// code blocks are code, not headings.
pub fn elements(page: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut open: Option<(String, Vec<&str>, usize)> = None;
    for (index, line) in page.lines().enumerate() {
        match open.take() {
            Some((lang, body, start)) => {
                if line.trim_start().starts_with("```") {
                    out.push(Element::Code {
                        lang,
                        text: body.iter().map(|l| format!("{l}\n")).collect(),
                        line: start,
                    });
                } else {
                    let mut body = body;
                    body.push(line);
                    open = Some((lang, body, start));
                }
            }
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    let lang = info.split_whitespace().next().unwrap_or("").to_owned();
                    open = Some((lang, Vec::new(), index + 1));
                } else if let Some(heading) = heading(line) {
                    out.push(heading);
                }
            }
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    out
}

fn heading(line: &str) -> Option<Element> {
    let level = line.chars().take_while(|c| *c == '#').count();
    let text = line.get(level..)?.strip_prefix(' ')?;
    (1..=6).contains(&level).then(|| Element::Heading {
        level,
        text: text.trim().to_owned(),
    })
}

/// The code blocks of `page` in language `lang`, in order.
pub fn code_blocks(page: &str, lang: &str) -> Vec<String> {
    elements(page)
        .into_iter()
        .filter_map(|element| match element {
            Element::Code { lang: l, text, .. } if l == lang => Some(text),
            _ => None,
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and
/// `_` dropped, spaces turned into `-`.
pub fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of every heading of `page` (`-1`, `-2`, ... for repeats, as GitHub does).
pub fn anchors(page: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for element in elements(page) {
        if let Element::Heading { text, .. } = element {
            let base = slug(&text);
            let repeats = seen.iter().filter(|s| **s == base).count();
            seen.push(base.clone());
            out.push(if repeats == 0 {
                base
            } else {
                format!("{base}-{repeats}")
            });
        }
    }
    out
}

/// The text of the section under the heading `title` (exact heading text),
/// up to the next heading of the same or a higher level; `None` if absent.
pub fn section(page: &str, title: &str) -> Option<String> {
    let mut lines = page.lines();
    let mut level = 0;
    for line in lines.by_ref() {
        if let Some(Element::Heading { level: l, text }) = heading(line)
            && text == title
        {
            level = l;
            break;
        }
    }
    if level == 0 {
        return None;
    }
    let mut out = String::new();
    let mut in_code = false;
    for line in lines {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code
            && let Some(Element::Heading { level: l, .. }) = heading(line)
            && l <= level
        {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// The targets of the inline links (`[text](target)`) of `page`, outside code
/// blocks and inline code, with their line numbers.
pub fn links(page: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (index, line) in page.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Inline code spans hold no links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((index + 1, after[..end].trim().to_owned()));
            rest = &after[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_blocks_headings_and_sections() {
        let page = "# Title\n\n```bash\necho hi\n# not a heading\n```\n\n## A `b` (c)\n\ntext [x](y.md#z) `[no](link)`\n\n### Sub\n\nmore\n\n## Next\n";
        assert_eq!(
            code_blocks(page, "bash"),
            vec!["echo hi\n# not a heading\n"]
        );
        assert_eq!(anchors(page), vec!["title", "a-b-c", "sub", "next"]);
        assert_eq!(links(page), vec![(10, "y.md#z".to_owned())]);
        let section = section(page, "A `b` (c)").unwrap();
        assert!(section.contains("### Sub") && section.contains("more"));
        assert!(!section.contains("Next"));
    }
}
