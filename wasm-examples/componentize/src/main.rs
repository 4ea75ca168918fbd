//! `pouch-componentize IN.wasm OUT.wasm`: wraps a WASI preview 1 core module into a WASI
//! preview 2 component with the preview1 "command" adapter of wasmtime 48, the line Pouch runs.

use std::process::ExitCode;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        eprintln!("usage: pouch-componentize IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    let run = || -> Result<(), String> {
        let module = std::fs::read(input).map_err(|e| format!("read {input}: {e}"))?;
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .map_err(|e| format!("{input}: {e:#}"))?
            .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER)
            .map_err(|e| format!("adapter: {e:#}"))?
            .validate(true)
            .encode()
            .map_err(|e| format!("encode {input}: {e:#}"))?;
        std::fs::write(output, component).map_err(|e| format!("write {output}: {e}"))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pouch-componentize: {e}");
            ExitCode::FAILURE
        }
    }
}
