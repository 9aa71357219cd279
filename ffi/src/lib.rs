//! C ABI for ringbus (see `include/ringbus.h`).
#![deny(missing_docs)]
