//! The shell blocks of a Markdown page: every ```` ```sh ```` fence, split into logical lines
//! (backslash continuations joined, comment lines dropped). `<!-- on: every node -->` before a
//! fence marks a block an operator runs on every Graphite node, `<!-- on: graphite-02 -->` one
//! run on that node; others run on the first node (which also hosts the coordinator).

use std::path::Path;

/// One ```` ```sh ```` block.
#[derive(Debug)]
pub struct Block {
    /// `file:line` of the fence, for messages.
    pub origin: String,
    /// Where it runs: `Some("every node")`, `Some(<node>)`, or `None` for the first node.
    pub on: Option<String>,
    /// Logical lines, in order.
    pub lines: Vec<String>,
}

/// Fences that hold shell but would escape the runner.
const OTHER_SHELLS: [&str; 4] = ["bash", "shell", "console", "shell-session"];

/// The blocks of `path`.
///
/// # Panics
/// On an unclosed fence or a shell block fenced as something other than `sh`.
pub fn blocks(path: &Path, shown_as: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{shown_as}: {e}"));
    let mut blocks = Vec::new();
    let mut on: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim();
        if let Some(target) = trimmed
            .strip_prefix("<!-- on: ")
            .and_then(|t| t.strip_suffix(" -->"))
        {
            on = Some(target.to_string());
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                on = None;
            }
            continue;
        };
        assert!(
            !OTHER_SHELLS.contains(&info),
            "{shown_as}:{}: fence shell as ```sh so the docs test runs it",
            n + 1
        );
        let mut body = Vec::new();
        loop {
            let (m, inner) = lines
                .next()
                .unwrap_or_else(|| panic!("{shown_as}:{}: unclosed fence", n + 1));
            if inner.trim() == "```" {
                break;
            }
            body.push((m, inner));
        }
        if info == "sh" {
            blocks.push(Block {
                origin: format!("{shown_as}:{}", n + 1),
                on: on.clone(),
                lines: logical_lines(body.iter().map(|(_, l)| *l)),
            });
        }
        on = None;
    }
    blocks
}

fn logical_lines<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in raw {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(current.is_empty(), "a block ends in a continuation");
    out
}

#[test]
fn blocks_are_found_joined_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    std::fs::write(
        &page,
        "text\n```sh\n# comment\necho a \\\n  b\n\necho c\n```\n<!-- on: every node -->\n\n```sh\necho d\n```\n```toml\nx = 1\n```\n",
    )
    .unwrap();
    let found = blocks(&page, "page.md");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].lines, ["echo a    b", "echo c"]);
    assert_eq!(found[0].on, None);
    assert_eq!(found[1].on.as_deref(), Some("every node"));
    assert_eq!(found[1].origin, "page.md:11");
}
