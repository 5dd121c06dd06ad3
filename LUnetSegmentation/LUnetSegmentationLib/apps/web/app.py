"""The one-click panel as a web app on Slicer's core (trame-slicer): `python -m LUnetSegmentationLib serve`.

Slice and 3D views, the segment editor (paint, erase, ...) and undo come from trame-slicer;
the LUnet panel (open, Segment, volumes, Save) is ours and calls the same `api` as the Slicer
module through `session.WebSession`. The slow step, `job.compute`, runs in a worker thread so
that the views stay live and the progress bar moves; every MRML change happens on the
server's event loop.

Needs the optional web environment (`bash scripts/setup_web_env.sh` -> .venv-web): trame-slicer
pins its own slicer-core and VTK, so it is kept apart from .venv and from the desktop extension.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from trame.app import get_server
from trame.widgets import html
from trame.widgets.vuetify3 import (
    VAlert,
    VBtn,
    VCard,
    VCardText,
    VCardTitle,
    VDivider,
    VFileInput,
    VProgressLinear,
    VSelect,
    VTable,
)
from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import LayoutButtonLogic, SegmentEditorLogic
from trame_slicer.app.ui import (
    ControlButton,
    LayoutButton,
    SegmentEditorToolbarUI,
    SegmentEditorUI,
    SegmentEditorUndoRedoUI,
    ViewerLayout,
)
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories

from ...runtime.preprocess import InputError
from .session import DEFAULT_MAX_UPLOAD_MB, OUTPUTS, UPLOAD_SUFFIXES, WebSession

log = logging.getLogger("LUnetSegmentation.web")

PANEL = "LUnetPanel"
EDITOR = SegmentEditorUI.__name__


def _model_items(extra: str | None = None) -> list[dict]:
    """The shipped models, and the one named on the command line (a card path) if it is another."""
    from ...runtime.weights import available_models, find_model

    items = [{"title": card.data.get("name", card.model_id), "value": card.model_id} for card in available_models()]
    if extra and extra not in [item["value"] for item in items]:
        card = find_model(extra)  # fails early, with the weights module's message, on a bad path
        items.append({"title": f"{card.data.get('name', card.model_id)} ({Path(extra).name})", "value": str(extra)})
    return items


def _device_items() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _message(error: BaseException) -> str:
    """What the user reads: our errors already say what to do; anything else gets context."""
    from ...runtime.weights import WeightsError

    if isinstance(error, (InputError, WeightsError, FileNotFoundError)):
        return str(error)
    return f"{type(error).__name__}: {error}. Nothing was changed; see the server log for details."


class LUnetWebApp:
    def __init__(self, server=None, files=(), model: str | None = None, device: str = "auto",
                 maxUploadMb: float = DEFAULT_MAX_UPLOAD_MB):
        self.server = get_server(server, client_type="vue3")
        self.server.enable_module(trame_slicer_module)  # the chunked upload helper (window.load_files_by_chunks)
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server)
        self.session = WebSession(self.slicer.scene)
        self.maxUploadBytes = int(maxUploadMb * 2**20)
        self._uploaded: list[dict] = []
        self._progress = 0.0
        self._cancel = False
        self._refresh_task: asyncio.Task | None = None
        self._running = False  # a segmentation is in progress (uploads wait for it)
        self._upload_bytes = 0

        self.layoutLogic = LayoutButtonLogic(self.server, self.slicer)
        self.editorLogic = SegmentEditorLogic(self.server, self.slicer)

        models = _model_items(model)
        state = self.server.state
        state.trame__title = "LUnet hippocampus segmentation"
        state.update({
            "lunet_case": "",
            "lunet_busy": False,
            "lunet_progress": 0,
            "lunet_status": "Open a T1 MRI to begin.",
            "lunet_error": "",
            "lunet_rows": [],
            "lunet_models": models,
            "lunet_model": model or (models[0]["value"] if models else None),
            "lunet_devices": _device_items(),
            "lunet_device": device,
            "lunet_can_save_here": False,
            "lunet_saved": "",
        })
        self._build_ui()
        self.editorLogic.set_ui(self.editorUi)
        self.layoutLogic.set_ui(self.layoutButton)
        self.slicer.segmentation_editor.segmentation_modified.connect(self._schedule_refresh)
        for path in files:
            self.openPath(path)

    # ------------------------------------------------------------------ UI

    def _build_ui(self):
        with ViewerLayout(self.server, title="LUnet hippocampus segmentation", is_drawer_visible=True) as self.layout:
            viewer = self.layout.typed_state
            viewer.data.active_tool = PANEL
            with self.layout.drawer:
                with html.Div(v_if=(f"{viewer.name.active_tool} === '{PANEL}'",), classes="pa-2"):
                    self._build_panel()
                self.editorUi = SegmentEditorUI(v_if=(f"{viewer.name.active_tool} === '{EDITOR}'",))
            with self.layout.toolbar:
                self._tool_button("LUnet segmentation", "mdi-brain", PANEL)
                self._tool_button("Edit segments (paint, erase, ...)", "mdi-brush", EDITOR)
                self.layoutButton = LayoutButton(classes="mt-1")
                SegmentEditorToolbarUI(editor_ui=self.editorUi)
            with self.layout.undo_redo:
                # Always there: the effect buttons in the toolbar edit from either panel.
                SegmentEditorUndoRedoUI(editor_ui=self.editorUi)
            with self.layout.content:
                self.layoutLogic.layout_manager.initialize_layout_grid(self.layout)

    def _tool_button(self, name: str, icon: str, tool: str):
        viewer = self.layout.typed_state

        def show():
            viewer.data.is_drawer_visible = True
            viewer.data.active_tool = tool

        ControlButton(name=name, icon=icon, click=show, active=(f"{viewer.name.active_tool} === '{tool}'",),
                      classes="mt-1", id=f"lunet-tool-{tool}")

    def _build_panel(self):
        upload = self.server.trigger_name(self._on_upload_chunk)
        limit = self.maxUploadBytes
        # Checked in the browser first so that a too-large file is never sent, and again on the server.
        pick = (
            "($event.target.files && $event.target.files.length) ? "
            f"(($event.target.files[0].size > {limit}) ? "
            f"(lunet_error = $event.target.files[0].name + ' is ' + ($event.target.files[0].size / 1048576).toFixed(1) "
            f"+ ' MB, more than this server accepts ({limit / 2**20:.1f} MB). Give its path on the command line instead, "
            "or start the server with a larger --max-upload-mb.') : "
            "(lunet_busy = true, lunet_error = '', lunet_status = 'Uploading ' + $event.target.files[0].name + ' ...', "
            f"window.load_files_by_chunks($event.target.files, {{ trigger_name: '{upload}' }}))) : null"
        )
        with VCard(variant="flat"):
            VCardTitle("Hippocampus (LUnet)")
            with VCardText():
                html.Div("{{ lunet_case || 'No volume loaded' }}", id="lunet-case", classes="text-subtitle-1 mb-2")
                VFileInput(
                    label="Open a T1 MRI", accept=",".join(UPLOAD_SUFFIXES), change=pick, disabled=("lunet_busy",),
                    prepend_icon="mdi-file-upload", density="compact", hide_details=True, id="lunet-upload",
                    multiple=False,
                )
                VSelect(label="Model", items=("lunet_models",), v_model=("lunet_model",), density="compact",
                        classes="mt-3", hide_details=True, disabled=("lunet_busy",))
                VSelect(label="Device", items=("lunet_devices",), v_model=("lunet_device",), density="compact",
                        classes="mt-3", hide_details=True, disabled=("lunet_busy",))
                VBtn("Segment", click=self.startSegmentation, color="primary", block=True, classes="mt-3",
                     disabled=("lunet_busy || !lunet_case",), id="lunet-segment", prepend_icon="mdi-play")
                VProgressLinear(v_if=("lunet_busy",), model_value=("lunet_progress",), height=8, classes="mt-2",
                                indeterminate=("lunet_progress <= 1",),  # whole-head runs report no fractions
                                id="lunet-progress", color="primary")
                VBtn("Cancel", v_if=("lunet_busy && lunet_progress > 0",), click=self.cancel, block=True,
                     variant="tonal", classes="mt-2", id="lunet-cancel")
                html.Div("{{ lunet_status }}", id="lunet-status", classes="text-body-2 mt-2")
                VAlert(v_if=("lunet_error",), text=("lunet_error",), type="error", density="compact", classes="mt-2",
                       closable=True, click_close="lunet_error = ''", id="lunet-error")
            VDivider()
            with VCardText():
                with VTable(density="compact", id="lunet-segments"):
                    with html.Thead():
                        with html.Tr():
                            html.Th("Segment")
                            html.Th("Volume (mm³)", classes="text-right")
                    with html.Tbody():
                        with html.Tr(v_for="row in lunet_rows", key="row.segmentId", classes="lunet-segment-row"):
                            with html.Td():
                                html.Span(style=("`display:inline-block;width:12px;height:12px;margin-right:6px;"
                                                 "background:${row.color}`",))
                                html.Span("{{ row.name }}", classes="lunet-segment-name")
                            html.Td("{{ row.volumeMm3.toFixed(0) }}", classes="text-right lunet-segment-volume")
                html.Div("No segments yet.", v_if=("lunet_rows.length === 0",), classes="text-caption")
                VBtn("Save next to input", click=self.saveNextToInput, block=True, classes="mt-3", id="lunet-save",
                     v_if=("lunet_can_save_here",), disabled=("lunet_busy || lunet_rows.length === 0",),
                     prepend_icon="mdi-content-save")
                download = self.server.trigger_name(self._download)
                for kind, label in (("seg", ".seg.nrrd"), ("labels", "labelmap (.nii.gz)")):
                    suffix = "".join(OUTPUTS[kind])
                    VBtn(f"Download {label}", block=True, variant="tonal", classes="mt-2", id=f"lunet-download-{kind}",
                         disabled=("lunet_busy || lunet_rows.length === 0",), prepend_icon="mdi-download",
                         click=(f"utils.download(lunet_case + '{suffix}', trigger('{download}', ['{kind}']), "
                                "'application/octet-stream')"))
                html.Div("{{ lunet_saved }}", id="lunet-saved", classes="text-caption mt-2")

    # ------------------------------------------------------------------ loading

    def openPath(self, path) -> bool:
        """Open a file given on the command line; an error is shown, not raised."""
        try:
            self._show(self.session.load(path))
            return True
        except Exception as error:  # shown to the user; the scene is as it was
            log.warning("could not open %s: %s", path, error)
            self.server.state.lunet_error = _message(error)
            return False

    async def _on_upload_chunk(self, files):
        # trame-slicer's loader sends the files in chunks, then an empty list to say "done".
        # Chunks past the size limit are dropped as they come, not kept until the end.
        if files:
            self._upload_bytes += sum(int(f.get("size") or 0) for f in files)
            if self._upload_bytes <= self.maxUploadBytes and not self._running:
                self._uploaded.extend(files)
            return
        uploaded, self._uploaded = self._uploaded, []
        total, self._upload_bytes = self._upload_bytes, 0
        state = self.server.state
        try:
            if self._running:
                raise InputError("A segmentation is running: open the next volume when it has finished.")
            if total > self.maxUploadBytes:
                raise InputError(f"The upload is {total / 2**20:.1f} MB, more than this server accepts "
                                 f"({self.maxUploadBytes / 2**20:.1f} MB). Give its path on the command line "
                                 "instead, or start the server with a larger --max-upload-mb.")
            if len(uploaded) != 1:
                raise InputError(f"Open one volume file at a time ({len(uploaded)} were sent).")
            from trame.app.file_upload import ClientFile

            upload = ClientFile(uploaded[0])
            if not upload.content:
                raise InputError(f"{upload.name} arrived empty. Try again, or give its path on the command line.")
            self._show(self.session.loadUpload(upload.name, upload.content, self.maxUploadBytes))
        except Exception as error:
            log.warning("upload failed: %s", error)
            state.lunet_error = _message(error)
            state.lunet_status = "The previous volume and results are unchanged." if self.session.case else \
                "Open a T1 MRI to begin."
        finally:
            state.lunet_busy = self._running  # an upload refused during a run leaves the run's "busy"
            state.flush()

    def _show(self, case):
        scene = self.slicer.scene
        for node in scene.GetNodesByClass("vtkMRMLSegmentationNode"):
            if node is not case.segmentationNode and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(False)  # earlier cases stay in the scene, hidden
        self.slicer.display_manager.show_volume_in_slice_background(case.volumeNode)
        self.slicer.display_manager.show_volume_in_slice_foreground(None)
        self.slicer.display_manager.set_node_visible_in_group(case.volumeNode)
        editor = self.slicer.segmentation_editor
        editor.set_active_segmentation(case.segmentationNode, case.volumeNode)
        self.slicer.display_manager.reset_views()
        state = self.server.state
        self.layout.typed_state.data.is_volume_loaded = True
        dims = case.volumeNode.GetImageData().GetDimensions()
        spacing = case.volumeNode.GetSpacing()
        state.lunet_case = case.name
        state.lunet_can_save_here = case.inputPath is not None
        state.lunet_saved = ""
        state.lunet_error = ""
        state.lunet_status = (f"Loaded {case.name}: {dims[0]}x{dims[1]}x{dims[2]} voxels of "
                              f"{spacing[0]:.2g}x{spacing[1]:.2g}x{spacing[2]:.2g} mm. Press Segment.")
        if case.warnings:  # from the entry check: shown with the case, before Segment
            state.lunet_status += " Caution: " + " ".join(case.warnings)
        self._refresh_rows()

    # ------------------------------------------------------------------ segmenting

    def startSegmentation(self):
        # Decided here, synchronously, not from client-writable state: two quick clicks must
        # not start two runs.
        if self._running:
            return
        self._running = True
        self._segment_task = asyncio.ensure_future(self.segment())

    def cancel(self, *_args, **_kwargs):
        self._cancel = True

    def _on_progress(self, fraction: float):  # worker thread: only store it
        self._progress = fraction

    async def segment(self):
        """Segment the current case; on any failure the case and earlier results stay as they were."""
        state = self.server.state
        with state:
            state.lunet_busy, state.lunet_error, state.lunet_progress = True, "", 0
            state.lunet_status = "Loading the model ..."
        await asyncio.sleep(0)  # let the browser see "busy" before the model loads
        self._progress, self._cancel = 0.0, False
        self._running = True
        try:
            from ...slicer_adapter import api

            # Loading a model (and torch) takes seconds: off the event loop, so the page stays live.
            await asyncio.get_running_loop().run_in_executor(None, api.getSegmenter, state.lunet_model,
                                                             state.lunet_device)
            job = self.session.prepare(state.lunet_model, state.lunet_device)  # MRML: on the loop
            with state:
                state.lunet_status = f"Segmenting {self.session.case.name} on {job.device} ..."
            work = asyncio.get_running_loop().run_in_executor(None, job.compute, self._on_progress,
                                                              lambda: self._cancel)
            while not work.done():
                with state:
                    state.lunet_progress = max(1, round(100 * self._progress))
                await asyncio.sleep(0.25)
            await work
            rows = self.session.finish(job)
            editor = self.slicer.segmentation_editor
            # The node is already the editor's (since it was opened): re-activating it would
            # leave the old editing wrapper connected. Undo history is dropped: it described
            # edits of the segments just replaced.
            if editor.undo_stack is not None:
                editor.undo_stack.clear()
            editor.set_active_segment_id(editor.get_nth_segment_id(0))
            editor.set_surface_representation_enabled(True)
            editor.trigger_all_signals()
            self._focus_on_result(rows)
            with state:
                state.lunet_status = f"Done: {job.summary}."
                state.lunet_rows = [row.__dict__ for row in rows]
        except InterruptedError:
            with state:
                state.lunet_status = "Cancelled; nothing was changed."
        except Exception as error:
            log.exception("segmentation failed")
            with state:
                state.lunet_error = _message(error)
                state.lunet_status = "Segmentation failed; the volume and earlier results are unchanged."
        finally:
            self._running = False
            with state:
                state.lunet_busy = False
                state.lunet_progress = 0

    def _focus_on_result(self, rows):
        """Slices through the first segment, the 3D camera on the segments (not the whole head)."""
        centre = self.session.segmentCentre(rows[0].segmentId) if rows else None
        if centre is not None:
            for node in self.slicer.scene.GetNodesByClass("vtkMRMLSliceNode"):
                node.JumpSliceByCentering(*centre)
        for view in self.slicer.view_manager.get_threed_views():
            view.fit_view_to_content()

    # ------------------------------------------------------------------ table and saving

    def _refresh_rows(self):
        self.server.state.lunet_rows = [row.__dict__ for row in self.session.segmentRows()]

    def _schedule_refresh(self, *_):
        # Edits modify the segmentation many times per stroke: measure once they settle.
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_task.cancel()

        async def later():
            await asyncio.sleep(0.5)
            with self.server.state:
                self._refresh_rows()

        try:
            self._refresh_task = asyncio.get_running_loop().create_task(later())
        except RuntimeError:  # no loop yet (files opened before the server starts)
            self._refresh_rows()

    def saveNextToInput(self):
        state = self.server.state
        try:
            segPath, labelPath = self.session.saveNextToInput()
            state.lunet_saved = f"Saved {segPath} and {labelPath}"
            state.lunet_error = ""
        except Exception as error:
            state.lunet_error = _message(error)

    def _download(self, kind: str):
        try:
            (content,) = self.session.downloadBytes((kind,)).values()
        except Exception as error:
            self.server.state.lunet_error = _message(error)
            self.server.state.flush()
            raise  # rejects the browser's download promise: no file named like a result is saved
        return self.server.protocol.addAttachment(content)


def serve(files=(), host: str = "127.0.0.1", port: int = 8080, model: str | None = None, device: str = "auto",
          maxUploadMb: float = DEFAULT_MAX_UPLOAD_MB, openBrowser: bool = False) -> None:
    """Start the app and block until the server stops (Ctrl+C)."""
    import sys

    app = LUnetWebApp(files=[Path(f) for f in files], model=model, device=device, maxUploadMb=maxUploadMb)
    app.server.controller.on_server_bind.add(lambda wslink_server: wslink_server.app.middlewares.append(
        same_origin_only(loopback=is_loopback(host))))
    app.server.controller.on_server_exited.add(app.cancel)  # Ctrl+C: do not wait for a whole run
    # trame parses sys.argv for options of its own (--host, --port, ...); ours are parsed already.
    sys.argv = sys.argv[:1]
    # timeout=0: wslink would otherwise shut the server down after 5 minutes without a browser
    # (say, while the user sets up an SSH tunnel).
    app.server.start(host=host, port=port, open_browser=openBrowser, timeout=0)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]", "::1"}


def same_origin_only(loopback: bool):
    """aiohttp middleware: refuse requests that another web site makes on the user's behalf.

    Binding to 127.0.0.1 keeps other machines out but not other pages in the user's own browser:
    any site could open a WebSocket to 127.0.0.1:PORT (wslink checks no Origin). So a request
    that names an Origin must come from this server's own address, and on loopback the Host must
    be a loopback name too (a DNS-rebinding page's Host is its own domain).
    """
    from urllib.parse import urlsplit

    from aiohttp import web

    @web.middleware
    async def check(request, handler):
        host = request.headers.get("Host", "")
        origin = request.headers.get("Origin")
        if loopback and urlsplit(f"//{host}").hostname not in {n.strip("[]") for n in LOOPBACK_NAMES}:
            raise web.HTTPForbidden(text="This server answers only on its loopback address.")
        if origin is not None and urlsplit(origin).netloc != host:
            raise web.HTTPForbidden(text="Cross-origin requests are refused.")
        return await handler(request)

    return check
