//! Registry access (OCI Distribution over HTTP, and OCI image-layout directories) behind one interface.
