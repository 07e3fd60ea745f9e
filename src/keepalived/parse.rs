//! keepalived::parse — the keyword tree of a keepalived.conf: every line
//! a node (keyword, arguments, file:line), every `{ ... }` the children of
//! the node that opens it.
//!
//! Rules (keepalived 2.2.7 `lib/parser.c`): a `{` belongs to the words
//! before it on its line, or — alone on a line — to the statement on the
//! line before (`virtual_server ...` then `{`); a `}` closes the innermost
//! block, words before it on its line being a statement of that block.
//! A `}` with no open block, a block still open at the end of the input
//! and a `{` with nothing to belong to are fatal: keepalived guesses and
//! goes on (exit 5), rvs refuses to guess which lines belong where.

use super::diag::{Diags, Loc, Severity};
use super::lexer::{Line, Token};

/// One keyword line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The first word.
    pub keyword: String,
    /// The other words before the line's end or its `{`/`}`.
    pub args: Vec<String>,
    /// Where the keyword is.
    pub loc: Loc,
    /// The block's lines, when the keyword opens one.
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The children (empty without a block).
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Most blocks open at once. keepalived's grammar nests four deep
/// (`virtual_server` > `real_server` > `HTTP_GET` > `url`); a deeper file
/// is refused at the line that goes past this, and reading stops there, so
/// no input builds a tree deep enough to exhaust the stack of whatever
/// walks or drops it.
pub const MAX_BLOCK_DEPTH: usize = 32;

/// Builds the tree of `lines`.
pub fn build(lines: &[Line], diags: &mut Diags) -> Vec<Node> {
    // stack[0] is the top level; every other entry an open block's node.
    let mut stack: Vec<(Option<Node>, Vec<Node>)> = vec![(None, Vec::new())];
    let mut too_deep = false;
    'lines: for line in lines {
        let mut words: Vec<String> = Vec::new();
        for token in &line.tokens {
            match token {
                Token::Word(w) => words.push(w.clone()),
                Token::Open if stack.len() > MAX_BLOCK_DEPTH => {
                    diags.push(
                        Severity::Fatal,
                        &line.loc,
                        format!("blocks nested more than {MAX_BLOCK_DEPTH} deep"),
                    );
                    too_deep = true;
                    break 'lines;
                }
                Token::Open => {
                    if let Some((kw, args)) = words.split_first() {
                        let node = Node {
                            keyword: kw.clone(),
                            args: args.to_vec(),
                            loc: line.loc.clone(),
                            block: Some(Vec::new()),
                        };
                        words.clear();
                        stack.push((Some(node), Vec::new()));
                    } else {
                        // `{` alone: it opens the block of the statement
                        // on the previous line.
                        let level = &mut stack.last_mut().expect("top level").1;
                        match level.pop() {
                            Some(mut node) if node.block.is_none() => {
                                node.block = Some(Vec::new());
                                stack.push((Some(node), Vec::new()));
                            }
                            other => {
                                level.extend(other);
                                diags.push(
                                    Severity::Fatal,
                                    &line.loc,
                                    "Unexpected '{': no keyword opens this block",
                                );
                                // Read its contents as a block nobody owns.
                                stack.push((None, Vec::new()));
                            }
                        }
                    }
                }
                Token::Close => {
                    flush(&mut stack, &mut words, &line.loc);
                    if stack.len() == 1 {
                        diags.push(
                            Severity::Fatal,
                            &line.loc,
                            "Extra '}' found: no block is open here",
                        );
                        continue;
                    }
                    close(&mut stack);
                }
            }
        }
        flush(&mut stack, &mut words, &line.loc);
    }
    while stack.len() > 1 {
        if let (false, Some((Some(node), _))) = (too_deep, stack.last()) {
            diags.push(
                Severity::Fatal,
                &node.loc,
                format!(
                    "missing '}}': the block of '{}' opened here is not closed",
                    node.keyword
                ),
            );
        }
        close(&mut stack);
    }
    stack.pop().map(|(_, nodes)| nodes).unwrap_or_default()
}

fn flush(stack: &mut [(Option<Node>, Vec<Node>)], words: &mut Vec<String>, loc: &Loc) {
    if let Some((kw, args)) = words.split_first() {
        let node = Node {
            keyword: kw.clone(),
            args: args.to_vec(),
            loc: loc.clone(),
            block: None,
        };
        if let Some(level) = stack.last_mut() {
            level.1.push(node);
        }
    }
    words.clear();
}

fn close(stack: &mut Vec<(Option<Node>, Vec<Node>)>) {
    if let Some((node, children)) = stack.pop() {
        let parent = &mut stack.last_mut().expect("top level stays").1;
        match node {
            Some(mut node) => {
                node.block = Some(children);
                parent.push(node);
            }
            None => parent.extend(children),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalived::lexer::{read_text, LexOptions};
    use std::path::Path;

    fn tree(text: &str) -> (Vec<Node>, Diags) {
        let mut diags = Diags::default();
        let opts = LexOptions {
            config_id: "main".into(),
            includes: true,
        };
        let lines = read_text(Path::new("t.conf"), text, &opts, &mut diags);
        (build(&lines, &mut diags), diags)
    }

    #[test]
    fn a_line_is_split_after_each_brace_so_one_line_blocks_work() {
        let (t, d) = tree("global_defs { router_id X }\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(t[0].keyword, "global_defs");
        assert_eq!(t[0].children()[0].keyword, "router_id");
        assert_eq!(t[0].children()[0].args, vec!["X"]);
    }

    #[test]
    fn a_brace_alone_opens_the_block_of_the_line_before() {
        let (t, d) = tree("virtual_server 10.0.0.1 80\n{\n protocol TCP\n}\n");
        assert!(d.0.is_empty(), "{d}");
        assert_eq!(t[0].args, vec!["10.0.0.1", "80"]);
        assert_eq!(t[0].children()[0].loc.line, 3);
    }

    #[test]
    fn blocks_nested_past_the_limit_are_fatal_at_that_line_and_reading_stops() {
        let deep: String = (0..100_000).map(|_| "a {\n").collect();
        let (nodes, d) = tree(&deep);
        let fatal: Vec<String> = d.at_least(Severity::Fatal).map(|x| x.to_string()).collect();
        assert_eq!(
            fatal,
            vec![format!(
                "t.conf:{}: fatal: blocks nested more than {MAX_BLOCK_DEPTH} deep",
                MAX_BLOCK_DEPTH + 1
            )]
        );
        let mut depth = 0;
        let mut level = &nodes;
        while let Some(n) = level.first() {
            depth += 1;
            level = n.block.as_ref().expect("a block");
        }
        assert_eq!(depth, MAX_BLOCK_DEPTH);
    }

    #[test]
    fn unbalanced_braces_are_fatal_at_the_opening_or_extra_line() {
        let (_, d) = tree("global_defs {\n router_id x\n");
        assert_eq!(d.0[0].loc.as_ref().unwrap().line, 1);
        assert_eq!(d.exit_code(), 4);
        let (_, d) = tree("global_defs {\n}\n}\n");
        assert_eq!(d.0[0].loc.as_ref().unwrap().line, 3);
    }
}
