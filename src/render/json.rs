//! The JSON plan: the [`PlanView`] pretty-printed. This is the plan file `apply plan.json`
//! executes, read back by [`super::parse_plan_file`].

use std::io;

use super::PlanView;

pub(super) fn render(view: &PlanView, out: &mut dyn io::Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, view)?;
    out.write_all(b"\n")
}
