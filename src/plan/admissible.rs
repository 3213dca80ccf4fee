//! A saved plan is untrusted input. Its `plan_hash` is an unkeyed sha256 that anyone can
//! recompute, so it only catches accidents; what makes a plan file safe to apply is this
//! module: every action must be one that the *current* configuration could itself produce.
//! Pure: (DesiredState, Plan) → the list of what is wrong; no I/O, no clock.
//!
//! The rule, per action kind (locations are the declared image's, derived from `airlock.toml`):
//! - import: `import:<key>` of a declared image, from exactly its upstream source (registry,
//!   repository, tag — or its pin), keeping exactly its declared platforms, to its quarantine
//!   tag; no dependencies;
//! - scan: `scan:<key>` of the quarantine tag of a declared image, of the digest that tag holds
//!   (or that the plan's import brings), depending on that import;
//! - promote: `promote:<key>` from a declared image's quarantine tag to its own live tag, of
//!   the same digest, depending on exactly the import and scan of that image in the plan;
//! - delete: with `prune = true`, an undeclared tag under the live prefix (a `sha256-<hex>`
//!   tag too: whether it is a genuine referrers index is a fact about the registry, which the
//!   delete step checks when it runs and then refuses); with `on_fail = "demote"`, a declared image's own
//!   live tag (and then nothing else is promoted or scanned for it).
//!
//! The shape of each action (which fields its kind carries) is already guaranteed by the type,
//! [`super::Op`]: a plan file's actions are converted strictly (`plan::view`) before this runs.
//!
//! Preconditions must be exactly the locations the planner records for that kind, and every
//! location must have one observed digest across the plan. The live catalog (`live_before`
//! → `live_after`) must be what the actions do, and a blocked entry must name a declared
//! image the plan does not promote, so what `show` prints is what `apply` runs.
//! The verdict itself is never taken from the plan: apply reads the verdict document when it
//! promotes (`apply::verdict_gate`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Action, ActionKind, CatalogEntry, Location, Op, Plan};
use crate::config::{DesiredState, ImageSpec, OnFail};
use crate::model::{Digest, Platform};

/// One thing wrong with a saved plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inadmissible {
    /// The action id, or the part of the plan (`live_after`, …) that is wrong.
    pub what: String,
    pub problem: String,
}

impl fmt::Display for Inadmissible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.problem)
    }
}

/// What kind of place a location is, for messages (a moved precondition, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationKind {
    /// A declared image's upstream source.
    Upstream,
    /// A declared image's quarantine tag.
    Quarantine,
    /// A tag in live (declared or, with prune, undeclared).
    Live,
}

/// Every declared location, classified once (a lookup per precondition stays O(log n)).
pub struct LocationKinds<'a> {
    desired: &'a DesiredState,
    known: BTreeMap<Location, LocationKind>,
}

impl<'a> LocationKinds<'a> {
    pub fn new(desired: &'a DesiredState) -> LocationKinds<'a> {
        let mut known = BTreeMap::new();
        for spec in &desired.images {
            let l = Locations::of(desired, spec);
            known.insert(l.upstream_tag, LocationKind::Upstream);
            known.insert(l.quarantine, LocationKind::Quarantine);
            known.insert(l.live, LocationKind::Live);
        }
        LocationKinds { desired, known }
    }

    /// Classify `loc` against the configuration (None: none of the three).
    pub fn kind(&self, loc: &Location) -> Option<LocationKind> {
        self.known.get(loc).copied().or_else(|| {
            (loc.registry == self.desired.live.registry
                && under_prefix(&loc.repository, &self.desired.live.prefix))
            .then_some(LocationKind::Live)
        })
    }
}

/// The locations of one declared image, as the planner derives them.
struct Locations {
    /// The upstream repository with the source tag (the import precondition's location).
    upstream_tag: Location,
    /// Where the import reads: the tag, or no tag when pinned.
    import_source: Location,
    quarantine: Location,
    live: Location,
}

impl Locations {
    fn of(desired: &DesiredState, spec: &ImageSpec) -> Locations {
        let upstream_tag = Location {
            registry: spec.source_registry.clone(),
            repository: spec.source.path.clone(),
            tag: Some(spec.tag.clone()),
        };
        Locations {
            import_source: Location {
                tag: if spec.pin.is_some() {
                    None
                } else {
                    Some(spec.tag.clone())
                },
                ..upstream_tag.clone()
            },
            upstream_tag,
            quarantine: Location::in_area(&desired.quarantine, spec),
            live: Location::in_area(&desired.live, spec),
        }
    }
}

fn under_prefix(repository: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

fn show(d: &Option<Digest>) -> String {
    d.as_ref()
        .map(|d| d.to_string())
        .unwrap_or_else(|| "(absent)".into())
}

/// Collects problems for one action.
struct Checker<'a> {
    action: &'a Action,
    problems: Vec<Inadmissible>,
}

impl Checker<'_> {
    fn fail(&mut self, problem: impl Into<String>) {
        self.problems.push(Inadmissible {
            what: format!("action `{}`", self.action.id),
            problem: problem.into(),
        });
    }

    /// Where the action reads or writes (`doing`: "it writes to") must be `want`; `rule`
    /// says where such an action may ("an import of … writes only to its quarantine tag").
    fn expect(&mut self, doing: &str, actual: &Location, want: &Location, rule: String) {
        if actual != want {
            self.fail(format!("{doing} {actual}, but {rule} {want}"));
        }
    }

    /// The action's preconditions are exactly at `want` (each once); returns the observed
    /// digests in that order.
    fn preconditions(&mut self, want: &[&Location]) -> Option<Vec<Option<Digest>>> {
        let a = self.action;
        let got: Vec<&Location> = a.preconditions.iter().map(|p| &p.location).collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted = want.to_vec();
        want_sorted.sort();
        if got_sorted != want_sorted {
            let list = |v: &[&Location]| {
                v.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            self.fail(format!(
                "its preconditions are on [{}], but a {} of this image re-checks exactly [{}]",
                list(&got),
                a.kind(),
                list(want)
            ));
            return None;
        }
        Some(
            want.iter()
                .map(|w| {
                    a.preconditions
                        .iter()
                        .find(|p| &&p.location == w)
                        .and_then(|p| p.digest.clone())
                })
                .collect(),
        )
    }

    fn depends_on(&mut self, want: &[String]) {
        let got = &self.action.depends_on;
        let mut g = got.clone();
        g.sort();
        let mut w = want.to_vec();
        w.sort();
        if g != w {
            self.fail(format!(
                "it depends on [{}], but the planner makes it depend on exactly [{}]",
                got.join(", "),
                want.join(", ")
            ));
        }
    }
}

/// Check every action of `plan` against what `desired` could produce. Empty: admissible.
pub fn check(desired: &DesiredState, plan: &Plan) -> Vec<Inadmissible> {
    let specs: BTreeMap<String, &ImageSpec> = desired.images.iter().map(|s| (s.key(), s)).collect();
    let declared_live: BTreeMap<(String, String), &ImageSpec> = desired
        .images
        .iter()
        .map(|s| ((desired.live.repository(&s.path), s.tag.clone()), s))
        .collect();
    let by_id: BTreeMap<&str, &Action> =
        plan.actions().iter().map(|a| (a.id.as_str(), a)).collect();
    let mut problems = Vec::new();

    for a in plan.actions() {
        let mut c = Checker {
            action: a,
            problems: Vec::new(),
        };
        let key = match &a.op {
            Op::Delete { image } => {
                check_delete(desired, &declared_live, &by_id, image.as_deref(), &mut c);
                problems.extend(c.problems);
                continue;
            }
            Op::Import { image, .. } | Op::Scan { image, .. } | Op::Promote { image, .. } => image,
        };
        let kind = a.kind();
        match specs.get(key.as_str()) {
            None => c.fail(format!(
                "{} an image that airlock.toml does not declare ({key}); a plan may only act on declared images (if the configuration changed since the plan was made, run `airlock plan` again)",
                match kind {
                    ActionKind::Import => "imports",
                    ActionKind::Scan => "scans",
                    _ => "promotes",
                },
            )),
            Some(spec) => {
                let want_id = format!("{kind}:{key}");
                if a.id != want_id {
                    c.fail(format!("a {kind} of {key} has the id `{want_id}`"));
                }
                let l = Locations::of(desired, spec);
                let import = by_id.get(format!("import:{key}").as_str()).copied();
                match &a.op {
                    Op::Import {
                        source,
                        source_digest,
                        platforms,
                        ..
                    } => check_import(spec, &l, source, source_digest, platforms, &mut c),
                    Op::Scan { .. } => check_scan(&l, import, &mut c),
                    Op::Promote { source, .. } => {
                        check_promote(key, &l, source, import, &by_id, &mut c)
                    }
                    Op::Delete { .. } => {} // checked above
                }
            }
        }
        problems.extend(c.problems);
    }
    for b in &plan.blocked {
        let what = format!("blocked `{}`", b.image);
        match specs.get(&b.image) {
            None => problems.push(Inadmissible {
                what,
                problem: "not an image airlock.toml declares".into(),
            }),
            Some(spec) => {
                if b.location != Locations::of(desired, spec).quarantine {
                    problems.push(Inadmissible {
                        what: what.clone(),
                        problem: format!(
                            "the verdict is about {}, not this image's quarantine tag",
                            b.location
                        ),
                    });
                }
                if by_id.contains_key(format!("promote:{}", b.image).as_str()) {
                    problems.push(Inadmissible {
                        what,
                        problem: "the plan both blocks and promotes it".into(),
                    });
                }
            }
        }
    }
    problems.extend(check_observations(plan));
    problems.extend(check_catalog(desired, plan));
    problems
}

fn check_import(
    spec: &ImageSpec,
    l: &Locations,
    source: &Location,
    read: &Digest,
    platforms: &Option<Vec<Platform>>,
    c: &mut Checker<'_>,
) {
    let a = c.action;
    let key = spec.key();
    let declared = format!("{key} is declared from");
    c.expect("it reads from", source, &l.import_source, declared);
    let only = format!("an import of {key} writes only to its quarantine tag");
    c.expect("it writes to", &a.target, &l.quarantine, only);
    if platforms != &spec.platforms {
        let list = |p: &Option<Vec<Platform>>| match p {
            None => "all platforms".to_string(),
            Some(v) => v
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        c.fail(format!(
            "it keeps {}, but {key} declares {}",
            list(platforms),
            list(&spec.platforms)
        ));
    }
    if let Some(pin) = &spec.pin
        && read != pin
    {
        c.fail(format!("it reads {read}, but {key} is pinned to {pin}"));
    }
    if platforms.is_none() && &a.digest != read {
        c.fail(format!(
            "it would tag {} but reads {read}: without a platform subset an import copies the source as it is",
            a.digest
        ));
    }
    if spec.pin.is_some() {
        if let Some(seen) = c.preconditions(&[&l.quarantine]) {
            check_replaces(c, &seen[0]);
        }
    } else if let Some(seen) = c.preconditions(&[&l.quarantine, &l.upstream_tag]) {
        check_replaces(c, &seen[0]);
        if seen[1].as_ref() != Some(read) {
            c.fail(format!(
                "it reads {read}, but its precondition has the upstream tag {} at {}",
                l.upstream_tag,
                show(&seen[1])
            ));
        }
    }
    c.depends_on(&[]);
}

/// `replaces` is what the target held when planned: the target precondition's digest. A
/// promote whose live tag already holds its digest (a record repair) replaces nothing.
fn check_replaces(c: &mut Checker<'_>, seen: &Option<Digest>) {
    if &c.action.replaces != seen && !is_record_repair(c.action, seen) {
        c.fail(format!(
            "it says it replaces {}, but its precondition has the target at {}",
            show(&c.action.replaces),
            show(seen)
        ));
    }
}

/// A promote of the digest the live tag already holds: only its promotion record is written.
fn is_record_repair(a: &Action, seen: &Option<Digest>) -> bool {
    a.kind() == ActionKind::Promote && a.replaces.is_none() && seen.as_ref() == Some(&a.digest)
}

/// What the action's precondition says its target held when planned.
fn target_precondition(a: &Action) -> Option<Digest> {
    a.preconditions
        .iter()
        .find(|p| p.location == a.target)
        .and_then(|p| p.digest.clone())
}

fn check_scan(l: &Locations, import: Option<&Action>, c: &mut Checker<'_>) {
    let a = c.action;
    // `replaces` on a scan names the verdict a `--rescan` renews: scanning is always safe (it
    // only adds a verdict), so any value is admissible.
    if a.target != l.quarantine {
        c.fail(format!(
            "it scans {}, but this image is scanned only at its quarantine tag {}",
            a.target, l.quarantine
        ));
    }
    let seen = c.preconditions(&[&l.quarantine]);
    match import {
        Some(imp) => {
            c.depends_on(std::slice::from_ref(&imp.id));
            if a.digest != imp.digest {
                c.fail(format!(
                    "it scans {}, but the plan imports {}",
                    a.digest, imp.digest
                ));
            }
        }
        None => {
            c.depends_on(&[]);
            if let Some(seen) = seen
                && seen[0].as_ref() != Some(&a.digest)
            {
                c.fail(format!(
                    "it scans {}, but the quarantine tag held {} and the plan imports nothing",
                    a.digest,
                    show(&seen[0])
                ));
            }
        }
    }
}

fn check_promote(
    key: &str,
    l: &Locations,
    source: &Location,
    import: Option<&Action>,
    by_id: &BTreeMap<&str, &Action>,
    c: &mut Checker<'_>,
) {
    let a = c.action;
    // What it reads is what it tags: `Op::Promote` has no other digest to read.
    let only = format!("{key} is promoted only from its own quarantine tag");
    c.expect("it promotes from", source, &l.quarantine, only);
    let only = format!("{key} is promoted only to its live tag");
    c.expect("it writes to", &a.target, &l.live, only);
    if let Some(seen) = c.preconditions(&[&l.live, &l.quarantine]) {
        check_replaces(c, &seen[0]);
        if import.is_none() && seen[1].as_ref() != Some(&a.digest) {
            c.fail(format!(
                "it promotes {}, but the quarantine tag held {} and the plan imports nothing",
                a.digest,
                show(&seen[1])
            ));
        }
    }
    let scan = by_id.get(format!("scan:{key}").as_str()).copied();
    let mut deps: Vec<String> = import.iter().map(|i| i.id.clone()).collect();
    deps.extend(scan.map(|s| s.id.clone()));
    c.depends_on(&deps);
    if let Some(imp) = import
        && imp.digest != a.digest
    {
        c.fail(format!(
            "it promotes {}, but the plan imports {}",
            a.digest, imp.digest
        ));
    }
    if let Some(s) = scan
        && s.digest != a.digest
    {
        c.fail(format!(
            "it promotes {}, but the plan scans {}",
            a.digest, s.digest
        ));
    }
}

fn check_delete(
    desired: &DesiredState,
    declared_live: &BTreeMap<(String, String), &ImageSpec>,
    by_id: &BTreeMap<&str, &Action>,
    image: Option<&str>,
    c: &mut Checker<'_>,
) {
    let a = c.action;
    if a.replaces.is_some() {
        c.fail("a delete replaces nothing");
    }
    c.depends_on(&[]);
    let Some(tag) = a.target.tag.clone() else {
        c.fail("a delete names the tag it removes");
        return;
    };
    let want_id = format!("delete:{}:{}", a.target.repository, tag);
    if a.id != want_id {
        c.fail(format!("a delete of {} has the id `{want_id}`", a.target));
    }
    if let Some(seen) = c.preconditions(&[&a.target])
        && seen[0].as_ref() != Some(&a.digest)
    {
        c.fail(format!(
            "it deletes {}, but its precondition has {} at {}",
            a.digest,
            a.target,
            show(&seen[0])
        ));
    }
    if a.target.registry != desired.live.registry
        || !under_prefix(&a.target.repository, &desired.live.prefix)
    {
        c.fail(format!(
            "it deletes {}, which is not under the live prefix {}/{}: airlock deletes only live tags",
            a.target, desired.live.registry, desired.live.prefix
        ));
        return;
    }
    let declared = declared_live
        .get(&(a.target.repository.clone(), tag.clone()))
        .copied();
    match (image, declared) {
        (None, Some(spec)) => c.fail(format!(
            "it deletes {}, the declared live tag of {}; prune deletes only undeclared tags",
            a.target,
            spec.key()
        )),
        (None, None) => {
            if !desired.prune {
                c.fail(format!(
                    "it prunes {}, but prune is off in airlock.toml ([live] prune = false)",
                    a.target
                ));
            }
        }
        (Some(image), declared) => {
            if declared.map(|s| s.key()).as_deref() != Some(image) {
                c.fail(format!(
                    "it demotes {image}, but {} is not that declared image's live tag",
                    a.target
                ));
                return;
            }
            if desired.gate.on_fail != OnFail::Demote {
                c.fail(format!(
                    "it demotes {image}, but on_fail is not \"demote\" in airlock.toml"
                ));
            }
            for kind in ["scan", "promote"] {
                if by_id.contains_key(format!("{kind}:{image}").as_str()) {
                    c.fail(format!(
                        "it demotes {image}, but the plan also {kind}s it; the planner demotes only an image whose current verdict fails"
                    ));
                }
            }
        }
    }
}

/// Every location is observed once: all preconditions on it agree.
fn check_observations(plan: &Plan) -> Vec<Inadmissible> {
    let mut seen: BTreeMap<&Location, (&Option<Digest>, &str)> = BTreeMap::new();
    let mut problems = Vec::new();
    for a in plan.actions() {
        let mut mine = BTreeSet::new();
        for p in &a.preconditions {
            if !mine.insert(&p.location) {
                problems.push(Inadmissible {
                    what: format!("action `{}`", a.id),
                    problem: format!("it lists the precondition on {} twice", p.location),
                });
            }
            match seen.get(&p.location) {
                Some((d, other)) if *d != &p.digest => problems.push(Inadmissible {
                    what: format!("action `{}`", a.id),
                    problem: format!(
                        "its precondition has {} at {}, but action `{other}` has it at {}: one plan observes a tag once",
                        p.location,
                        show(&p.digest),
                        show(d)
                    ),
                }),
                Some(_) => {}
                None => {
                    seen.insert(&p.location, (&p.digest, &a.id));
                }
            }
        }
    }
    problems
}

/// `live_after` must be `live_before` with the actions applied, and each action must start
/// from what `live_before` says.
fn check_catalog(desired: &DesiredState, plan: &Plan) -> Vec<Inadmissible> {
    let mut problems = Vec::new();
    let mut state: BTreeMap<(String, String), Digest> = BTreeMap::new();
    for e in &plan.live_before {
        if state
            .insert((e.repository.clone(), e.tag.clone()), e.digest.clone())
            .is_some()
        {
            problems.push(Inadmissible {
                what: "live_before".into(),
                problem: format!("it lists {}:{} twice", e.repository, e.tag),
            });
        }
    }
    let before = state.clone();
    for a in plan.actions() {
        let (ActionKind::Promote | ActionKind::Delete) = a.kind() else {
            continue;
        };
        if a.target.registry != desired.live.registry {
            continue; // reported per action
        }
        let Some(tag) = a.target.tag.clone() else {
            continue;
        };
        let k = (a.target.repository.clone(), tag);
        let was = before.get(&k).cloned();
        let (expected_before, after) = match a.kind() {
            ActionKind::Promote if is_record_repair(a, &target_precondition(a)) => {
                (Some(a.digest.clone()), Some(a.digest.clone()))
            }
            ActionKind::Promote => (a.replaces.clone(), Some(a.digest.clone())),
            _ => (Some(a.digest.clone()), None),
        };
        if was != expected_before {
            problems.push(Inadmissible {
                what: format!("action `{}`", a.id),
                problem: format!(
                    "it starts from {} at {}, but live_before shows {}",
                    show(&expected_before),
                    a.target,
                    show(&was)
                ),
            });
        }
        match after {
            Some(d) => state.insert(k, d),
            None => state.remove(&k),
        };
    }
    let mut computed: Vec<CatalogEntry> = state
        .into_iter()
        .map(|((repository, tag), digest)| CatalogEntry {
            repository,
            tag,
            digest,
        })
        .collect();
    computed.sort();
    if computed != plan.live_after {
        problems.push(Inadmissible {
            what: "live_after".into(),
            problem:
                "the live catalog after the plan is not what its actions produce from live_before"
                    .into(),
        });
    }
    problems
}

#[cfg(test)]
mod tests;
