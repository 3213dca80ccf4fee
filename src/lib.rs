//! airlock: declarative container-image quarantine.
//!
//! This is the code map (in the manner of rust-analyzer's `architecture.md`): what the
//! crate looks like from above, which module owns what and may call whom, the invariants
//! that hold across modules, and what is left out on purpose. README.md, "Architecture",
//! points here; keep the two in step.
//!
//! # Bird's-eye view
//!
//! `airlock.toml` names the images wanted in `live/`. Data flows one way:
//!
//! ```text
//! airlock.toml ─► config (schema → lowered, validated) ─► DesiredState
//! registries   ─► observe (read-only, async)            ─► ObservedState
//! (DesiredState, ObservedState, now) ─► plan::diff ─► Plan (DAG of actions)   [pure]
//! Plan ─► render::PlanView ─► human | json | markdown                         [pure]
//! Plan ─► apply (tokio, bounded per registry) ─► registries ─► report
//! live/ ─► audit ─► every live tag proven by its promotion record and verdicts
//! ```
//!
//! The registries are the state: tags, verdict artifacts and promotion records (OCI
//! referrers). The pure middle (config, plan, render) is where the decisions are made and
//! tested from in-memory state; I/O lives at the edges (observe, apply, audit, gate's
//! scanners, registry).
//!
//! # Code map
//!
//! Every module may use the leaves `model` (no I/O, no internal dependencies) and
//! `observed` (plain data). "May call" lists the rest; an import outside it is a defect.
//!
//! - `main.rs`: argument parsing, logging setup, the exit code. May call `cli`, `error`,
//!   `exit`.
//! - [`cli`]: clap types, help texts, dispatch; the only module that knows clap. May call
//!   `commands`, and `render` / `admission` / `error` / `exit` for their formats and codes.
//! - [`commands`]: one function per command: wiring, terminal I/O, signals. May call
//!   everything below it.
//! - [`exit`]: the one mapping from outcomes and errors to exit codes. May call `error`.
//! - [`error`]: the crate's error, wrapping the errors of `config`, `plan`, `registry`,
//!   `render` and `unobserved` (a pure leaf: the images a run could not observe),
//!   which is all it may name.
//! - [`config`]: TOML schema, lowering into `DesiredState`, file:line:col errors. Pure.
//! - [`select`]: `--image` / `--rescan` selections over the configuration. Pure. May call
//!   `config`, `error`.
//! - [`plan`]: `Plan`, its actions (`Action { id, target, digest, .., op: Op }`: what
//!   only one kind carries lives in its `Op` variant) and validated DAG; `plan::view`
//!   the plan file's form of an action (`ActionView`, what `Plan::hash` hashes) and its
//!   strict conversion; `plan::diff` the planner; `plan::admissible` the rule a saved plan
//!   must meet. Pure. May call `config`, `select`, and `gate` for its reason constants only.
//! - [`render`]: `PlanView` (holding `ActionView`s) and the human / JSON / markdown
//!   renderers. Pure. May call `plan`.
//! - [`heartbeat`]: progress lines of a long apply. May call `plan`.
//! - [`records`]: verdict and promotion-record artifacts (pure builders and readers);
//!   `records::binding`, the one rule deciding when a record vouches for a live tag.
//! - [`registry`]: the registry interface: an OCI Distribution client over HTTP(S) and a
//!   directory of OCI layouts behind one `Registry`, which refuses malformed names and
//!   holds the rules both backends share (a digest reference names the manifest's own
//!   digest, a blob stream is verified before a backend stores it, the referrers tag
//!   schema) before it dispatches. Inside, `registry::http` sends every
//!   request one way (`http::transport`: permit, auth, retry, deadlines, error mapping)
//!   and groups the endpoints by what they move (`manifests`, `blobs`, `upload`,
//!   `download`, `cache`); `auth` owns challenges, tokens and basic credentials,
//!   `credentials` their sources, `retry` the policy, `verify` digest-checked streams,
//!   `referrers_merge` the read-merge-write-re-read of a tag-schema index (with a check
//!   on the listing it merges into), `tls` the one TLS configuration of the process.
//!   May call `config`; AAD tokens (`auth = "azure"`) come through the `IdentitySource`
//!   plug-in that `commands` wires from `azure`, so `registry` names nothing in `azure`.
//! - [`observe`]: the registry reads the planner needs, concurrently. May call `registry`,
//!   `records`, `config`, `error`.
//! - [`gate`]: built-in policy checks, external scanners, the verdict. May call `registry`,
//!   `records`, `config`, and `azure` for Defender (issue 16 moves this behind a `Scanner`
//!   trait).
//! - [`apply`]: the executor, steps, transfers (mount, de-duplication, verification),
//!   saved-plan checks, the verdict check at promote time (`apply::verdict_gate`),
//!   `acr-import` glue, the report. May call `registry`, `gate`, `observe`, `records`,
//!   `plan`, `config`, `error`, `exit` (the report's outcome), `azure`.
//! - [`audit`]: walks live and checks each tag's promotion record, origin and verdicts.
//!   May call `registry`, `observe`, `records`, `config`, `error`.
//! - [`cluster`]: the live set and the `images` exports; `cluster::read` does its registry
//!   reads. May call `registry`, `observe`, `config`, `error`.
//! - [`admission`]: admission policies built from the live set (VAP, Gatekeeper, Kyverno,
//!   Azure Policy) and a small YAML writer. Pure. May call `cluster`, `config`.
//! - [`versions`]: which tags are newer versions of a declared tag (semver, variants,
//!   prereleases). Pure.
//! - [`outdated`]: the `outdated` report and its renderings. Pure. May call `config`,
//!   `versions`.
//! - [`pin`]: mutable-tag warnings and the `toml_edit` rewrite of `digest` lines and
//!   `pins`. Pure (the command reads and writes the file). May call `config`.
//! - [`track`]: which versions a `track` entry declares, and the configuration with them
//!   expanded. Pure. May call `config`, `versions`.
//! - `azure` (feature `azure`): one `Azure` context per command (cloud endpoints, the AAD
//!   credential chain, the ARM client), azure_core on our reqwest, ARM importImage, Defender
//!   via Resource Graph, Key Vault signing (`azurekms://`, a `signing::Kms`). May call
//!   `registry`, `config`, `gate`, `records`, `signing`.
//!
//! # Architecture invariants
//!
//! - **Planning is pure.** `config`, `plan`, `render`, `records`, `admission` and `model`
//!   have no `async`, no reqwest, no tokio, no clock (the caller passes `now`); a plan is
//!   computed from in-memory `DesiredState` and `ObservedState`.
//! - **Apply executes only admissible actions.** It walks exactly the plan, never
//!   re-plans mid-run, and each step re-checks its target and does nothing when it already
//!   holds. A saved plan is applied only if every action is one the current configuration
//!   could produce (`plan::admissible`) and every precondition still holds.
//! - **Nothing is tagged before its content and its record.** Blobs, then child manifests
//!   by digest, then the index or manifest by tag; every blob is verified against its
//!   digest and size while it streams, every manifest against its digest and the digest
//!   the registry announces. A live tag is written only after its promotion record.
//! - **The gate fails closed.** No verdict, a pending or stale verdict, a scanner error or
//!   an unreadable scanner report never lets an image into live.
//! - **Secrets are never printed.** Credential types redact themselves in `Debug` and
//!   `Display`; URLs in transport errors lose their query; passwords come from the
//!   environment or credential helpers, never from the configuration file.
//! - **Output is deterministic.** Everything rendered is sorted; plans carry no timestamps.
//! - **The plan file is a view.** `render::PlanView` and the hash hold `plan::view::ActionView`,
//!   never the internal `Action`: renaming inside airlock changes no plan file and no
//!   plan hash, and an action whose fields do not fit its kind is refused by id when read.
//! - **Every registry request goes one way.** `registry::http::transport` is the only
//!   place that sends; it holds the registry's permit, so `max_concurrency` bounds every
//!   request, and credentials never leave the registry's origin.
//!
//! # Deliberately absent
//!
//! - A state file: the registries are the state.
//! - Re-planning during apply.
//! - A mock of the registry protocol in the integration tests: they start real Docker
//!   Distribution processes and cross-check with skopeo.
//! - Shelling out to skopeo or docker at run time.
//! - Process-wide mutable state beyond caches keyed by what they cache: the Azure
//!   credential chain, ARM client and cloud live in the `Azure` context `commands` builds
//!   for one command and hands to what needs it.

pub mod admission;
pub mod apply;
pub mod audit;
#[cfg(feature = "azure")]
pub mod azure;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod exit;
pub mod gate;
pub mod heartbeat;
pub mod model;
pub mod observe;
pub mod observed;
pub mod outdated;
pub mod pin;
pub mod plan;
pub mod records;
pub mod registry;
pub mod render;
pub mod secret;
pub mod select;
pub mod signing;
pub mod track;
pub mod unobserved;
pub mod versions;
