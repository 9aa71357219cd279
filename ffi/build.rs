//! With the `header` feature, writes the C header with cbindgen to
//! `$RINGBUS_HEADER_OUT`, else `include/ringbus.h` (see
//! `ffi/check-header.sh`). Without it, does nothing.

fn main() {
    #[cfg(feature = "header")]
    header::generate();
}

#[cfg(feature = "header")]
mod header {
    use std::path::PathBuf;

    pub fn generate() {
        let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
        println!("cargo:rerun-if-changed=src");
        println!("cargo:rerun-if-changed=cbindgen.toml");
        println!("cargo:rerun-if-env-changed=RINGBUS_HEADER_OUT");
        let out = std::env::var_os("RINGBUS_HEADER_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate_dir.join("../include/ringbus.h"));
        let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
            .expect("ffi/cbindgen.toml");
        cbindgen::Builder::new()
            .with_crate(&crate_dir)
            .with_config(config)
            .generate()
            .expect("cbindgen could not generate the header")
            .write_to_file(&out);
    }
}
