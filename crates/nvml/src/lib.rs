//! NVIDIA GPU attestation through the driver's NVML (`libnvidia-ml.so.1`,
//! loaded at run time so that nodes without a GPU need no NVIDIA library).
//!
//! For each GPU: `nvmlDeviceGetConfComputeGpuAttestationReport` with the
//! nonce (the GPU signs an SPDM measurements report answering it) and
//! `nvmlDeviceGetConfComputeGpuCertificate` (its PEM attestation chain).
//! Both fail unless the GPU is in confidential-computing mode.

use std::os::raw::{c_char, c_int, c_uint, c_void};

use libloading::{Library, Symbol};

/// Most GPUs read.
pub const MAX_GPUS: u32 = 16;

/// NVML could not be used, or a GPU could not attest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NvmlError(String);

/// One GPU's attestation: its report and certificate chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuAttestation {
    /// The SPDM measurements report (request ‖ response), as the driver
    /// returns it.
    pub report: Vec<u8>,
    /// The PEM attestation certificate chain, leaf first.
    pub chain: Vec<u8>,
}

const NONCE_SIZE: usize = 0x20;
const REPORT_SIZE: usize = 0x2000;
const CEC_REPORT_SIZE: usize = 0x1000;
const CERT_CHAIN_SIZE: usize = 0x1000;
const ATTESTATION_CERT_CHAIN_SIZE: usize = 0x1400;

/// `nvmlConfComputeGpuAttestationReport_t`.
#[repr(C)]
struct AttestationReport {
    is_cec_attestation_report_present: c_uint,
    attestation_report_size: c_uint,
    cec_attestation_report_size: c_uint,
    nonce: [u8; NONCE_SIZE],
    attestation_report: [u8; REPORT_SIZE],
    cec_attestation_report: [u8; CEC_REPORT_SIZE],
}

/// `nvmlConfComputeGpuCertificate_t`.
#[repr(C)]
struct GpuCertificate {
    cert_chain_size: c_uint,
    attestation_cert_chain_size: c_uint,
    cert_chain: [u8; CERT_CHAIN_SIZE],
    attestation_cert_chain: [u8; ATTESTATION_CERT_CHAIN_SIZE],
}

type Device = *mut c_void;
type Init = unsafe extern "C" fn() -> c_int;
type Count = unsafe extern "C" fn(*mut c_uint) -> c_int;
type Handle = unsafe extern "C" fn(c_uint, *mut Device) -> c_int;
type Report = unsafe extern "C" fn(Device, *mut AttestationReport) -> c_int;
type Certificate = unsafe extern "C" fn(Device, *mut GpuCertificate) -> c_int;
type ErrorString = unsafe extern "C" fn(c_int) -> *const c_char;

/// The NVIDIA GPUs of this machine, through the driver's NVML library.
pub struct NvmlGpus {
    library: Library,
    count: u32,
}

impl std::fmt::Debug for NvmlGpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlGpus")
            .field("count", &self.count)
            .finish()
    }
}

fn gpu_error(what: impl std::fmt::Display) -> NvmlError {
    NvmlError(what.to_string())
}

impl NvmlGpus {
    /// Loads NVML, initialises it and counts the GPUs; refuses a machine
    /// with none.
    pub fn open() -> Result<Self, NvmlError> {
        // SAFETY: loading the driver's own NVML library, whose initialisers
        // are the driver's; nothing else is loaded.
        let library = unsafe { Library::new("libnvidia-ml.so.1") }
            .map_err(|e| gpu_error(format!("cannot load NVIDIA's NVML library: {e}")))?;
        let mut gpus = NvmlGpus { library, count: 0 };
        // SAFETY: nvmlInit_v2 takes nothing.
        gpus.call::<Init>("nvmlInit_v2", |f| unsafe { f() })?;
        let mut count: c_uint = 0;
        // SAFETY: the count is written to a live local.
        gpus.call::<Count>("nvmlDeviceGetCount_v2", |f| unsafe { f(&mut count) })?;
        if count == 0 {
            return Err(gpu_error("NVML reports no GPU"));
        }
        gpus.count = count.min(MAX_GPUS);
        Ok(gpus)
    }

    /// How many GPUs give evidence.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Calls `name` through `call`, turning a failing NVML status into an
    /// error that names the function and NVML's message.
    fn call<F: Copy>(&self, name: &str, call: impl FnOnce(F) -> c_int) -> Result<(), NvmlError> {
        // SAFETY: each `F` is the prototype nvml.h declares for `name`.
        let f: Symbol<'_, F> = unsafe { self.library.get(name.as_bytes()) }
            .map_err(|e| gpu_error(format!("NVML has no {name}: {e}")))?;
        match call(*f) {
            0 => Ok(()),
            status => Err(gpu_error(format!("{name}: {}", self.message(status)))),
        }
    }

    fn message(&self, status: c_int) -> String {
        // SAFETY: nvmlErrorString has this prototype and returns a static C
        // string or null.
        let text = unsafe {
            self.library
                .get::<ErrorString>(b"nvmlErrorString")
                .ok()
                .map(|f| f(status))
                .filter(|p| !p.is_null())
                .map(|p| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        format!("NVML error {status}: {}", text.unwrap_or_default())
    }

    /// GPU `index`'s report answering `nonce`, and its chain.
    pub fn attest(&self, index: u32, nonce: &[u8; 32]) -> Result<GpuAttestation, NvmlError> {
        let mut device: Device = std::ptr::null_mut();
        // SAFETY: the handle is written to a live local.
        self.call::<Handle>("nvmlDeviceGetHandleByIndex_v2", |f| unsafe {
            f(index, &mut device)
        })?;
        let mut report = Box::new(AttestationReport {
            is_cec_attestation_report_present: 0,
            attestation_report_size: 0,
            cec_attestation_report_size: 0,
            nonce: *nonce,
            attestation_report: [0; REPORT_SIZE],
            cec_attestation_report: [0; CEC_REPORT_SIZE],
        });
        // SAFETY: `report` is a boxed struct of nvml.h's layout; the driver
        // writes within it.
        self.call::<Report>("nvmlDeviceGetConfComputeGpuAttestationReport", |f| unsafe {
            f(device, &mut *report)
        })?;
        let mut cert = Box::new(GpuCertificate {
            cert_chain_size: 0,
            attestation_cert_chain_size: 0,
            cert_chain: [0; CERT_CHAIN_SIZE],
            attestation_cert_chain: [0; ATTESTATION_CERT_CHAIN_SIZE],
        });
        // SAFETY: as for the report.
        self.call::<Certificate>("nvmlDeviceGetConfComputeGpuCertificate", |f| unsafe {
            f(device, &mut *cert)
        })?;
        let report_len = (report.attestation_report_size as usize).min(REPORT_SIZE);
        let chain_len =
            (cert.attestation_cert_chain_size as usize).min(ATTESTATION_CERT_CHAIN_SIZE);
        if report_len == 0 || chain_len == 0 {
            return Err(gpu_error(format!(
                "GPU {index} returned an empty report or certificate chain"
            )));
        }
        Ok(GpuAttestation {
            report: report.attestation_report[..report_len].to_vec(),
            chain: cert.attestation_cert_chain[..chain_len].to_vec(),
        })
    }
}
