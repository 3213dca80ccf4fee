//! The plan: plain data describing what apply will do, held in a validated dependency graph.
//! Built by `plan::diff` (pure); rendered by `render`; executed by `apply`. The `reason` of an
//! action is for people only: nothing ever matches on it.

pub mod admissible;
pub mod diff;
#[cfg(test)]
pub(crate) mod fixture;
pub mod view;

use std::collections::BTreeMap;
use std::fmt;

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::model::{Digest, Platform};
use crate::observed::{FindingSummary, LiveTag};

/// The closed set of things apply can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Copy the source content into quarantine and tag it.
    Import,
    /// Run the gate on the quarantined digest and record a verdict.
    Scan,
    /// Copy (mount) the quarantined digest into live and tag it, with a promotion record.
    Promote,
    /// Delete a live tag's manifest (prune, or demote on a failing renewed verdict).
    Delete,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Import => "import",
            ActionKind::Scan => "scan",
            ActionKind::Promote => "promote",
            ActionKind::Delete => "delete",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository (and tag) in a registry known by its configuration key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub registry: String,
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tag: Option<String>,
}

impl Location {
    /// Where `area` (quarantine or live) keeps the image `spec`: its repository there, its tag.
    pub fn in_area(area: &crate::config::Area, spec: &crate::config::ImageSpec) -> Location {
        Location {
            registry: area.registry.clone(),
            repository: area.repository(&spec.path),
            tag: Some(spec.tag.clone()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

/// What a tag pointed to when the plan was made (None: the tag did not exist).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precondition {
    pub location: Location,
    pub digest: Option<Digest>,
}

/// One step of the plan. What every kind has is here; what only some kinds have is in
/// [`Op`], so an action cannot carry a field its kind does not use (a scan with a source, a
/// delete with platforms). The plan file holds [`view::ActionView`], converted strictly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Stable id: `<kind>:<image key>` (delete: `delete:<repository>:<tag>`).
    pub id: String,
    /// Where the action writes (scan: the quarantined image it scans).
    pub target: Location,
    /// The content digest the target will hold (delete: the digest removed).
    pub digest: Digest,
    /// The digest a replaced tag pointed to; for a scan, the current verdict it renews
    /// (`--rescan`), which apply then renews even though it is current.
    pub replaces: Option<Digest>,
    pub preconditions: Vec<Precondition>,
    pub depends_on: Vec<String>,
    /// Display only.
    pub reason: String,
    /// What the action does, with what only that kind needs.
    pub op: Op,
}

/// What an action does. `image` is the image key (`path:tag`) the action serves; `size`
/// and `platform_count` describe the content (display and progress only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Copy the source content into quarantine and tag it.
    Import {
        image: String,
        /// The upstream repository, with the tag (None when pinned: read by digest only).
        source: Location,
        /// Digest read at the source (an import of a platform subset reads the whole index,
        /// then tags the rebuilt subset, `Action::digest`).
        source_digest: Digest,
        /// The platform subset to keep (None: the content as it is).
        platforms: Option<Vec<Platform>>,
        size: Option<u64>,
        platform_count: Option<usize>,
    },
    /// Run the gate on the quarantined digest (`Action::target`) and record a verdict.
    Scan {
        image: String,
        size: Option<u64>,
        platform_count: Option<usize>,
    },
    /// Copy (mount) the quarantined digest from `source` into live and tag it, with a
    /// promotion record. A promotion reads exactly the digest it tags (`Action::digest`).
    Promote {
        image: String,
        /// The image's quarantine tag.
        source: Location,
        size: Option<u64>,
        platform_count: Option<usize>,
    },
    /// Delete a live tag's manifest: a prune (`image` None: a tag no image declares) or a
    /// demote (`image`: the declared image whose renewed verdict fails).
    Delete { image: Option<String> },
}

impl Op {
    pub fn kind(&self) -> ActionKind {
        match self {
            Op::Import { .. } => ActionKind::Import,
            Op::Scan { .. } => ActionKind::Scan,
            Op::Promote { .. } => ActionKind::Promote,
            Op::Delete { .. } => ActionKind::Delete,
        }
    }
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        self.op.kind()
    }

    /// The image key this action serves; None for pruning undeclared tags.
    pub fn image(&self) -> Option<&str> {
        match &self.op {
            Op::Import { image, .. } | Op::Scan { image, .. } | Op::Promote { image, .. } => {
                Some(image)
            }
            Op::Delete { image } => image.as_deref(),
        }
    }

    /// Where the content is read from and the digest read there (import: upstream;
    /// promote: quarantine, the digest it tags); None for scan and delete.
    pub fn source(&self) -> Option<(&Location, &Digest)> {
        match &self.op {
            Op::Import {
                source,
                source_digest,
                ..
            } => Some((source, source_digest)),
            Op::Promote { source, .. } => Some((source, &self.digest)),
            Op::Scan { .. } | Op::Delete { .. } => None,
        }
    }
}

/// An image the gate keeps out of live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    pub image: String,
    pub digest: Digest,
    /// The quarantined image the verdict is about.
    pub location: Location,
    /// The verdict artifact with the full findings.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verdict: Option<Digest>,
    /// The verdict artifact as a pullable reference, `<registry host>/<repository>@<digest>`
    /// (for `skopeo inspect`, `oras pull`, `crane manifest`); None for an image-layout registry.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verdict_reference: Option<String>,
    pub reason: String,
    pub findings: Vec<FindingSummary>,
    /// True when the image is already live (a renewed verdict failed).
    pub live: bool,
}

/// One live tag in the before/after catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
}

impl fmt::Display for CatalogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} @ {}",
            self.repository,
            self.tag,
            self.digest.short()
        )
    }
}

/// See [`Plan::summary`] for what each count means.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub import: usize,
    pub scan: usize,
    pub promote: usize,
    pub replace: usize,
    pub delete: usize,
    pub blocked: usize,
}

/// The plan: actions in a validated DAG, plus what is blocked, unmanaged, and warned about.
#[derive(Clone, Debug)]
pub struct Plan {
    actions: Vec<Action>,
    pub blocked: Vec<Blocked>,
    pub unmanaged: Vec<LiveTag>,
    pub warnings: Vec<String>,
    pub policy_hash: Digest,
    pub live_before: Vec<CatalogEntry>,
    pub live_after: Vec<CatalogEntry>,
    /// Made for the images selected with `--image` only (never prunes).
    pub partial: bool,
    graph: DiGraph<usize, ()>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error("action `{0}` is listed twice")]
    DuplicateAction(String),
    #[error("action `{action}` depends on `{missing}`, which is not in the plan")]
    MissingDependency { action: String, missing: String },
    #[error("the plan's actions form a cycle through `{0}`")]
    Cycle(String),
}

/// Everything a plan is made of, before validation.
#[derive(Clone, Debug, Default)]
pub struct PlanParts {
    pub actions: Vec<Action>,
    pub blocked: Vec<Blocked>,
    pub unmanaged: Vec<LiveTag>,
    pub warnings: Vec<String>,
    pub live_before: Vec<CatalogEntry>,
    pub live_after: Vec<CatalogEntry>,
    /// Made for a subset of the images (`--image`).
    pub partial: bool,
}

impl Plan {
    /// Validate the dependency graph (every dependency exists, no cycle) and order the
    /// actions topologically, ties broken by kind then id, so the order is deterministic.
    pub fn new(parts: PlanParts, policy_hash: Digest) -> Result<Plan, PlanError> {
        let PlanParts {
            mut actions,
            mut blocked,
            mut unmanaged,
            mut warnings,
            mut live_before,
            mut live_after,
            partial,
        } = parts;
        actions.sort_by(|a, b| (a.kind(), &a.id).cmp(&(b.kind(), &b.id)));
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, a) in actions.iter().enumerate() {
            if ids.insert(&a.id, i).is_some() {
                return Err(PlanError::DuplicateAction(a.id.clone()));
            }
        }
        let mut g: DiGraph<usize, ()> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..actions.len()).map(|i| g.add_node(i)).collect();
        for (i, a) in actions.iter().enumerate() {
            for d in &a.depends_on {
                let Some(&j) = ids.get(d.as_str()) else {
                    return Err(PlanError::MissingDependency {
                        action: a.id.clone(),
                        missing: d.clone(),
                    });
                };
                g.add_edge(nodes[j], nodes[i], ());
            }
        }
        let order =
            toposort(&g, None).map_err(|c| PlanError::Cycle(actions[g[c.node_id()]].id.clone()))?;
        // Stable layering: an action's depth is 1 + its deepest dependency; sort by
        // (depth, kind, id) which is a valid topological order and independent of hashing.
        let mut depth = vec![0usize; actions.len()];
        for n in &order {
            let i = g[*n];
            for d in &actions[i].depends_on {
                let j = ids[d.as_str()];
                depth[i] = depth[i].max(depth[j] + 1);
            }
        }
        let mut idx: Vec<usize> = (0..actions.len()).collect();
        idx.sort_by(|&a, &b| {
            (depth[a], actions[a].kind(), &actions[a].id).cmp(&(
                depth[b],
                actions[b].kind(),
                &actions[b].id,
            ))
        });
        let mut slots: Vec<Option<Action>> = actions.into_iter().map(Some).collect();
        let actions: Vec<Action> = idx
            .iter()
            .map(|&i| slots[i].take().expect("each once"))
            .collect();
        // Rebuild the graph in the final order.
        let pos: BTreeMap<String, usize> = actions
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        let mut graph: DiGraph<usize, ()> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..actions.len()).map(|i| graph.add_node(i)).collect();
        for (i, a) in actions.iter().enumerate() {
            for d in &a.depends_on {
                graph.add_edge(nodes[pos[d]], nodes[i], ());
            }
        }
        blocked.sort_by(|a, b| a.image.cmp(&b.image));
        unmanaged.sort();
        warnings.sort();
        warnings.dedup();
        live_before.sort();
        live_after.sort();
        Ok(Plan {
            actions,
            blocked,
            unmanaged,
            warnings,
            policy_hash,
            live_before,
            live_after,
            partial,
            graph,
        })
    }

    /// Actions in a deterministic topological order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Indexes (into `actions()`) of the actions `i` depends on.
    pub fn dependencies(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
            .map(|n| self.graph[n])
            .collect();
        v.sort();
        v
    }

    /// Indexes of the actions that depend on `i`.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
            .map(|n| self.graph[n])
            .collect();
        v.sort();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Whether apply has anything to do or report as changed.
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Counts of the plan. `import`, `scan`, `promote` and `delete` count actions of that
    /// kind; `replace` counts images whose quarantine or live tag moves away from other
    /// content, once per image however many of its tags move (those actions are also counted
    /// as imports and promotions); `blocked` counts blocked images.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            blocked: self.blocked.len(),
            ..Summary::default()
        };
        let mut replaced: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for a in &self.actions {
            match a.kind() {
                ActionKind::Import => s.import += 1,
                ActionKind::Scan => s.scan += 1,
                ActionKind::Promote => s.promote += 1,
                ActionKind::Delete => s.delete += 1,
            }
            if a.replaces.is_some()
                && let Op::Import { image, .. } | Op::Promote { image, .. } = &a.op
            {
                replaced.insert(image.as_str());
            }
        }
        s.replace = replaced.len();
        s
    }

    /// Every precondition of every action, deduplicated and sorted.
    pub fn preconditions(&self) -> Vec<Precondition> {
        let mut v: Vec<Precondition> = self
            .actions
            .iter()
            .flat_map(|a| a.preconditions.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// sha256 of the canonical JSON of the actions as the plan file writes them
    /// ([`view::ActionView`], not the internal [`Action`], so a rename inside airlock cannot
    /// change it): names the plan in promotion records.
    pub fn hash(&self) -> Digest {
        let views: Vec<view::ActionView> =
            self.actions.iter().map(view::ActionView::from).collect();
        Digest::of(&serde_json::to_vec(&views).expect("actions serialise"))
    }

    /// Split back into parts (for serialisation through the plan view).
    pub fn parts(&self) -> PlanParts {
        PlanParts {
            actions: self.actions.clone(),
            blocked: self.blocked.clone(),
            unmanaged: self.unmanaged.clone(),
            warnings: self.warnings.clone(),
            live_before: self.live_before.clone(),
            live_after: self.live_after.clone(),
            partial: self.partial,
        }
    }
}
