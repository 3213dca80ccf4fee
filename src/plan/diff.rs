//! The planner: (DesiredState, ObservedState, now) → Plan. Pure: no I/O, no async.
