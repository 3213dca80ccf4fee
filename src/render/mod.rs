//! PlanView, the one serialisable model of a plan, and its renderers: human, JSON, markdown.
