//! The HEADERS priority of each HTTP/2 stream: the one place that decides the
//! priority block (exclusive bit, stream dependency, weight) a request's HEADERS frame
//! carries, from its kind's template, the profile's rule and the streams open on the
//! connection at that moment. Pure logic; `h2.rs` keeps the open streams and sends.
//!
//! Chromium (`net/spdy/http2_priority_dependencies.cc`) gives every stream the weight
//! of its request priority, always sets the exclusive bit, and makes it depend on the
//! newest open stream of the same priority, else of the nearest higher one, else on
//! the root: a page load becomes one chain ordered by priority. Firefox sends the
//! fixed block of each kind (depends on 0, not exclusive), which is the template.

use serde::{Deserialize, Serialize};

use crate::profile::Http2Priority;

/// How a profile works out each stream's HEADERS priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityRule {
    /// The request kind's template block, as it is (Firefox).
    #[default]
    Template,
    /// The template's weight, exclusive, depending on the newest open stream of the
    /// same weight, else of the nearest higher weight, else on stream 0 (Chromium).
    Chromium,
}

/// The streams open on one connection, oldest first, with their weights: what the
/// Chromium rule looks at. Small (a page load keeps a few dozen streams open).
#[derive(Debug, Default)]
pub struct OpenStreams {
    streams: Vec<(u32, u16)>,
}

impl OpenStreams {
    /// The priority block for a new stream of `template`'s kind under `rule`.
    pub fn block_for(&self, rule: PriorityRule, template: Http2Priority) -> Http2Priority {
        match rule {
            PriorityRule::Template => template,
            PriorityRule::Chromium => Http2Priority {
                exclusive: true,
                depends_on: self.parent_of(template.weight),
                weight: template.weight,
            },
        }
    }

    /// Chromium's parent: the newest open stream at the same weight, else at the
    /// nearest weight above, else 0.
    fn parent_of(&self, weight: u16) -> u32 {
        let mut best: Option<(u16, u32)> = None;
        // Oldest first, so a later stream of the same weight replaces an earlier one.
        for &(id, w) in &self.streams {
            if w < weight {
                continue;
            }
            match best {
                Some((bw, _)) if w > bw => {}
                _ => best = Some((w, id)),
            }
        }
        best.map_or(0, |(_, id)| id)
    }

    /// A stream was opened with `weight`.
    pub fn opened(&mut self, id: u32, weight: u16) {
        self.streams.push((id, weight));
    }

    /// A stream ended (its response was read or dropped, or it was reset).
    pub fn closed(&mut self, id: u32) {
        if let Some(at) = self.streams.iter().position(|&(s, _)| s == id) {
            self.streams.remove(at);
        }
    }

    /// Number of open streams.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether none is open.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(w: u16) -> Http2Priority {
        Http2Priority {
            exclusive: false,
            depends_on: 0,
            weight: w,
        }
    }

    fn chromium(open: &OpenStreams, w: u16) -> (bool, u32, u16) {
        let b = open.block_for(PriorityRule::Chromium, weight(w));
        (b.exclusive, b.depends_on, b.weight)
    }

    /// The Chromium 156 capture (`../shared/reference/fingerprints`): document 256 on
    /// stream 1, image 147 on 3, fetch 220 on 5, favicon 220 on 7, then an XHR (220)
    /// while the favicon was still open: it depends on 7; every earlier one found its
    /// elders done and depends on 0.
    #[test]
    fn the_captured_page_load_is_reproduced() {
        let mut open = OpenStreams::default();
        assert_eq!(chromium(&open, 256), (true, 0, 256), "document");
        open.opened(1, 256);
        open.closed(1);
        assert_eq!(chromium(&open, 147), (true, 0, 147), "image");
        open.opened(3, 147);
        open.closed(3);
        assert_eq!(chromium(&open, 220), (true, 0, 220), "fetch");
        open.opened(5, 220);
        open.closed(5);
        assert_eq!(chromium(&open, 220), (true, 0, 220), "favicon");
        open.opened(7, 220);
        assert_eq!(
            chromium(&open, 220),
            (true, 7, 220),
            "xhr behind the favicon"
        );
    }

    #[test]
    fn a_stream_depends_on_the_newest_of_its_weight_else_the_nearest_above() {
        let mut open = OpenStreams::default();
        open.opened(1, 256); // document
        open.opened(3, 183); // stylesheet
        open.opened(5, 220); // script
        open.opened(7, 220); // another script
        assert_eq!(chromium(&open, 220).1, 7, "newest of the same weight");
        assert_eq!(chromium(&open, 183).1, 3, "same weight before higher ones");
        assert_eq!(chromium(&open, 147).1, 3, "nearest weight above: 183");
        assert_eq!(chromium(&open, 256).1, 1);
        open.closed(3);
        assert_eq!(chromium(&open, 147).1, 7, "183 gone: the newest 220");
        open.closed(7);
        open.closed(5);
        open.closed(1);
        assert!(open.is_empty());
        assert_eq!(chromium(&open, 147).1, 0, "all done: the root");
        open.closed(99); // unknown: nothing happens
        assert_eq!(open.len(), 0);
    }

    #[test]
    fn the_template_rule_sends_the_template() {
        let mut open = OpenStreams::default();
        open.opened(3, 42);
        let firefox = Http2Priority {
            exclusive: false,
            depends_on: 0,
            weight: 22,
        };
        assert_eq!(open.block_for(PriorityRule::Template, firefox), firefox);
    }
}
