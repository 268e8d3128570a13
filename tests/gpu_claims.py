"""``gpus`` token claim entries built to the contract shared by the appraisal core, the GPU
evidence producer and every display (docs/client.md "GPUs"): one entry per GPU, each with
index, ueid, hwmodel, arch, versions, mode, status, measurements, RIM ids, OCSP, simulated and
error. Values are shaped like those of the real corpus (../shared/gpu-vectors)."""

from __future__ import annotations

from typing import Any

UEID = "478176379286082186618948445787393647364802107249"
HWMODEL = "GH100 A01 GSP BROM"
DRIVER_RIM = "NV_GPU_DRIVER_GH100_550.90.07"
VBIOS_RIM = "NV_GPU_VBIOS_1010_0205_862_9600CF0001"


def gpu_claim(index: int = 0, **fields: Any) -> dict[str, Any]:
    """A verified hardware H100, with ``fields`` replaced."""
    entry: dict[str, Any] = {
        "index": index,
        "ueid": UEID,
        "hwmodel": HWMODEL,
        "arch": "hopper",
        "driver_version": "550.90.07",
        "vbios_version": "96.00.CF.00.01",
        "mode": "cc",
        "status": "verified",
        "measurements": {"result": "matched", "mismatched_indices": []},
        "rim_ids": [DRIVER_RIM, VBIOS_RIM],
        "ocsp": "good",
        "simulated": False,
        "error": None,
    }
    entry.update(fields)
    return entry


def simulated_gpu(index: int = 0) -> dict[str, Any]:
    return gpu_claim(index, simulated=True, ocsp="off", ueid="1", hwmodel="GH100 A01 GSP BROM")


def unattested_gpu(index: int = 0) -> dict[str, Any]:
    return gpu_claim(
        index,
        status="unattested",
        ueid=None,
        hwmodel=None,
        driver_version=None,
        vbios_version=None,
        mode=None,
        measurements={"result": "not_appraised", "mismatched_indices": []},
        rim_ids=[],
        ocsp="not_checked",
    )


def rejected_gpu(index: int = 0) -> dict[str, Any]:
    return gpu_claim(
        index,
        status="rejected",
        measurements={"result": "mismatched", "mismatched_indices": [9, 35]},
        error={
            "code": "gpu_measurement_mismatch",
            "message": "measurements differ from the RIMs at indices 9, 35",
        },
    )
