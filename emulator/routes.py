"""Route handlers: native generation, compatible mode, image tasks, and the admin surface."""

from __future__ import annotations

import hashlib
import time

from aiohttp import web

from emulator import directives as knobs
from emulator import embeddings, images, models, streams, text, tools, uploads, videos, vision
from emulator.core import (
    Emulator,
    error_response,
    json_response,
    message_texts,
    new_request_id,
    openai_error_response,
)
from emulator.errors import EmulatorError


def register(app: web.Application, emu: Emulator) -> None:
    native = NativeHandlers(emu)
    compatible = CompatibleHandlers(emu)
    tasks = TaskHandlers(emu)
    vectors = EmbeddingHandlers(emu)
    admin = AdminHandlers(emu)
    files = UploadHandlers(emu)
    app.add_routes([
        web.post("/api/v1/services/aigc/text-generation/generation", native.generation),
        web.post("/api/v1/services/aigc/multimodal-generation/generation", native.multimodal),
        web.post("/compatible-mode/v1/chat/completions", compatible.chat),
        web.post("/api/v1/services/embeddings/text-embedding/text-embedding", vectors.native),
        web.post("/compatible-mode/v1/embeddings", vectors.compatible),
        web.post("/api/v1/services/aigc/text2image/image-synthesis", tasks.submit),
        web.post("/api/v1/services/aigc/image2image/image-synthesis", tasks.submit_edit),
        web.post("/api/v1/services/aigc/video-generation/video-synthesis", tasks.submit_video),
        web.post("/api/v1/services/aigc/image2video/video-synthesis", tasks.submit_keyframes),
        web.get("/_emulator/videos/{task_id}.mp4", tasks.video),
        web.get("/api/v1/tasks/{task_id}", tasks.fetch),
        web.post("/api/v1/tasks/{task_id}/cancel", tasks.cancel),
        web.get("/api/v1/tasks", tasks.list),
        web.get("/api/v1/tasks/", tasks.list),
        web.get("/_emulator/images/{task_id}/{index}.png", tasks.image),
        web.get("/api/v1/uploads", files.policy),
        web.post(uploads.UPLOAD_PATH, files.store),
        web.get("/_emulator/uploads", files.list),
        web.get("/_emulator/health", admin.health),
        web.get("/_emulator/stats", admin.stats),
        web.get("/_emulator/tasks", admin.tasks),
        web.post("/_emulator/reset", admin.reset),
        web.get("/_emulator/config", admin.get_config),
        web.post("/_emulator/config", admin.set_config),
    ])


# Faults that happen inside a stream (or a 200 body) rather than before the answer.
_ANSWER_FAULTS = ("malformed", "stream-error")


def _is_sse(request: web.Request) -> bool:
    return request.headers.get("X-DashScope-SSE", "").lower() == "enable" or \
        "text/event-stream" in request.headers.get("Accept", "")


def _answer(model: models.TextModel, messages: list[dict], parameters: dict,
            thinking: bool, found: dict[str, str],
            images: list[vision.SeenImage] | None = None) -> streams.Answer:
    """The deterministic answer: tool calls, the reply to tool results, structured output,
    or the echo (naming the images it saw)."""
    multimodal = images is not None
    flat = vision.flattened(messages) if multimodal else messages
    calls = tools.planned_calls(parameters, messages, found)
    finish = "stop"
    if calls:
        content = ""
    elif messages[-1].get("role") == "tool":
        content = tools.tool_results_reply(messages)
    else:
        last_user = next((knobs.strip(m["content"]) for m in reversed(flat)
                          if m["role"] == "user"), "")
        content = tools.structured_reply(parameters.get("response_format"),
                                         [m["content"] for m in flat], last_user)
        if content is None:
            content, finish = text.reply(flat, parameters.get("max_tokens"))
            if images:
                content += f" (images: {', '.join(i.description for i in images)})"
    reasoning = text.reasoning(flat, parameters.get("thinking_budget")) if thinking else ""
    image_tokens = sum(i.tokens for i in images or ())
    top = parameters.get("top_logprobs", 0) if parameters.get("logprobs") else None
    return streams.Answer(
        reasoning=reasoning, content=content, finish=finish, thinking=thinking,
        input_tokens=text.input_tokens(flat, parameters.get("tools")) + image_tokens,
        stamped=found.get("stamp", "0") not in ("", "0", "false"), tool_calls=tuple(calls),
        multimodal=multimodal, image_tokens=image_tokens,
        detailed_usage=multimodal and model.name.startswith(vision.DETAILED_USAGE_PREFIXES),
        choices=int(parameters.get("n") or 1), top_logprobs=top)


class NativeHandlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def generation(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, multimodal=False)

    async def multimodal(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, multimodal=True)

    async def _generate(self, request: web.Request, *, multimodal: bool) -> web.StreamResponse:
        emu = self.emu
        streaming = _is_sse(request)
        endpoint = "multimodal" if multimodal else "generation"
        try:
            body = await emu.read_json(request)
            found = emu.directives_of(request, message_texts(body))
            emu.stats.record(endpoint, model=body.get("model"), headers=request.headers,
                             directive=knobs.signature(found) or None)
            emu.authorize(request)
            emu.throttle("generation", emu.config.rate_limit_rps)
            await emu.delay(found)
            fault = emu.chosen_fault(found)
            if fault not in _ANSWER_FAULTS:
                await emu.apply_fault(request, fault, found)
            model = models.lookup(body.get("model"))
            parameters = body.get("parameters") or {}
            images = None
            try:
                if multimodal:
                    messages, images = self._multimodal_input(request, body, parameters)
                else:
                    messages = text.prompt_messages(body.get("input") or {})
                text.check_parameters(parameters, model.output_limit)
                thinking = model.thinks(parameters)
                incremental = bool(parameters.get("incremental_output",
                                                  model.default_incremental(thinking)))
                models.check_streaming(model, thinking, streaming, incremental)
                failure = streams.StreamFault.of(found) if fault == "stream-error" else None
            except EmulatorError as error:
                if streaming and error.code == "InvalidParameter":
                    # Recorded: an invalid request sent with SSE is an HTTP 200 whose only
                    # event is the error (dashscope-protocol.md §3.5).
                    return await emu.send_stream(request, streams.native_events(
                        [], streams.StreamFault(at=1, error=error), new_request_id()),
                        found, ends_in_error=True)
                raise
        except EmulatorError as error:
            return error_response(error)
        if fault == "malformed":
            # HTTP 200 without `output`: the SDK cannot parse this (it raises TypeError).
            return json_response({"request_id": new_request_id()})
        try:
            answer = _answer(model, messages, parameters, thinking, found, images)
        except EmulatorError as error:
            return error_response(error)
        # Thinking mode and tools require result_format "message" (part 1 §3.1); such an
        # answer is always given in it, since a text-format one would have nowhere for the
        # reasoning or the calls. The multimodal endpoint has only the message format.
        message_format = thinking or multimodal or bool(answer.tool_calls) or \
            parameters.get("result_format", model.default_result_format()) == "message"
        if not streaming:
            return json_response({
                "output": streams.native_output(answer, message_format),
                "usage": answer.native_usage(answer.reasoning, answer.content, streamed=False),
                "request_id": new_request_id()})
        request_id = new_request_id()
        chunks = streams.native_tool_chunks(answer, request_id) if answer.tool_calls else \
            streams.native_chunks(answer, incremental, message_format, request_id)
        return await emu.send_stream(request, streams.native_events(chunks, failure, request_id),
                                     found, ends_in_error=failure is not None)

    def _multimodal_input(self, request: web.Request, body: dict, parameters: dict
                          ) -> tuple[list[dict], list[vision.SeenImage]]:
        model = body.get("model")
        if not vision.is_vision_model(model):
            raise EmulatorError(400, "InvalidParameter",
                                f"The model {model} does not support multimodal input.")
        messages = (body.get("input") or {}).get("messages")
        if not isinstance(messages, list) or not messages or \
                not all(isinstance(m, dict) and m.get("role") in text.ROLES for m in messages):
            raise EmulatorError(400, "InvalidParameter", "input.messages is required.")
        images = vision.images_of(messages, model=model, uploads=self.emu.uploads,
                                  headers=request.headers,
                                  high_resolution=bool(parameters.get("vl_high_resolution_images")))
        return messages, images


class CompatibleHandlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def chat(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        try:
            body = await emu.read_json(request)
            found = emu.directives_of(request, message_texts(body))
            emu.stats.record("compatible", model=body.get("model"), headers=request.headers,
                             directive=knobs.signature(found) or None)
            emu.authorize(request)
            emu.throttle("generation", emu.config.rate_limit_rps)
            await emu.delay(found)
            fault = emu.chosen_fault(found)
            if fault not in _ANSWER_FAULTS:
                await emu.apply_fault(request, fault, found)
            model = models.lookup(body.get("model"))
            messages, images = self._input(request, body)
            text.check_parameters(body, model.output_limit)
            # DashScope's extensions (enable_thinking, thinking_budget) sit at the top level.
            thinking = model.thinks(body)
            streaming = bool(body.get("stream"))
            models.check_streaming(model, thinking, streaming, incremental=True)
            failure = streams.StreamFault.of(found) if fault == "stream-error" else None
        except EmulatorError as error:
            return openai_error_response(error)
        try:
            answer = _answer(model, messages, body, thinking, found, images)
        except EmulatorError as error:
            return openai_error_response(error)
        common = {"object": "chat.completion", "created": int(time.time()),
                  "model": body["model"], "system_fingerprint": None,
                  "id": f"chatcmpl-{new_request_id()}"}
        if not streaming:
            return json_response({"choices": [{
                "message": streams.compatible_message(answer),
                "finish_reason": answer.finish_reason, "index": 0, "logprobs": None}],
                **common, "usage": answer.compatible_usage()})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = streams.compatible_chunks(answer, common, include_usage)
        return await emu.send_stream(request, streams.compatible_events(chunks, failure), found,
                                     ends_in_error=failure is not None)


    def _input(self, request: web.Request, body: dict
               ) -> tuple[list[dict], list[vision.SeenImage] | None]:
        """The messages in the native shapes: OpenAI's content parts as multimodal items
        (section 3.5: http(s) and data: URLs only), tool-call messages with content ""."""
        messages = body.get("messages")
        if isinstance(messages, list) and any(
                isinstance(m, dict) and isinstance(m.get("content"), list) for m in messages):
            if not vision.is_vision_model(body.get("model")):
                raise EmulatorError(400, "InvalidParameter",
                                    f"The model {body.get('model')} does not support "
                                    "multimodal input.")
            native = [{**m, "content": vision.native_items(m.get("content"))} for m in messages]
            return native, vision.images_of(native, model=body["model"],
                                            uploads=self.emu.uploads, headers={},
                                            high_resolution=False)
        if isinstance(messages, list):
            messages = [{**m, "content": m.get("content") or ""}
                        if isinstance(m, dict) and m.get("tool_calls") else m for m in messages]
        return text.check_messages(messages), None


class TaskHandlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def submit(self, request: web.Request) -> web.Response:
        # Text-to-image takes no input images.
        return await self._submit(request, "image_submit",
                                  lambda body: (*images.validate_submission(body), []))

    async def submit_edit(self, request: web.Request) -> web.Response:
        return await self._submit(request, "image_edit_submit", videos.validate_edit)

    async def submit_video(self, request: web.Request) -> web.Response:
        return await self._submit(request, "video_submit",
                                  lambda body: videos.validate_video(body, False))

    async def submit_keyframes(self, request: web.Request) -> web.Response:
        return await self._submit(request, "video_submit",
                                  lambda body: videos.validate_video(body, True))

    async def _submit(self, request: web.Request, endpoint: str, validate) -> web.Response:
        """Every async task submission: async only, directives and faults, the model's rules
        (`validate` answers model, prompt, n or duration, and the input image URLs), each input
        image an http(s) URL or an `oss://` object really uploaded (for this model, with the
        resolve header), checked before the task is accepted, then the submit rate."""
        emu = self.emu
        try:
            body = await emu.read_json(request)
            found = emu.directives_of(request, message_texts(body))
            emu.stats.record(endpoint, model=body.get("model"), headers=request.headers,
                             directive=knobs.signature(found) or None)
            emu.authorize(request)
            if request.headers.get("X-DashScope-Async", "").lower() != "enable":
                raise EmulatorError(403, "AccessDenied",
                                    "current user api does not support synchronous calls")
            await emu.delay(found)
            await emu.apply_fault(request, emu.chosen_fault(found), found)
            model, prompt, amount, urls = validate(body)
            for url in urls:
                if url.startswith("oss://"):
                    emu.uploads.resolve(url, model=model, headers=request.headers)
                elif not url.startswith(("https://", "http://", "data:")):
                    raise EmulatorError(400, "InvalidParameter",
                                        f"The image URL is not supported: {url[:100]}")
            emu.throttle(f"submit:{model}", emu.config.image_submit_qps)
        except EmulatorError as error:
            return error_response(error)
        if endpoint == "video_submit":
            task = emu.tasks.submit(model, prompt, 1, found, kind="video", seconds=amount,
                                    inputs=urls)
        else:
            task = emu.tasks.submit(model, prompt, amount, found, inputs=urls)
        return json_response({"output": {"task_status": "PENDING", "task_id": task.task_id},
                              "request_id": new_request_id()})

    async def video(self, request: web.Request) -> web.StreamResponse:
        """A succeeded task's MP4, streamed (403 like an expired OSS URL otherwise)."""
        emu = self.emu
        emu.stats.record("video_download")
        task = emu.tasks.tasks.get(request.match_info["task_id"])
        if emu.config.images_expired or task is None or task.status != "SUCCEEDED" \
                or task.kind != "video":
            return web.Response(status=403, content_type="application/xml",
                                text="<Error><Code>AccessDenied</Code>"
                                     "<Message>Request has expired.</Message></Error>")
        response = web.StreamResponse(headers={
            "Content-Type": "video/mp4",
            "Content-Length": str(videos.mp4_size(task.seconds, task.video_kb))})
        await response.prepare(request)
        for chunk in videos.mp4_chunks(task.task_id, task.seconds, task.video_kb):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def fetch(self, request: web.Request) -> web.Response:
        emu = self.emu
        try:
            emu.authorize(request)
            emu.stats.record("task_get", headers=request.headers)
        except EmulatorError as error:
            return error_response(error)
        task_id = request.match_info["task_id"]
        task = emu.tasks.get(task_id)
        if task is not None:
            task.queries.append(time.time())
        if task is None:
            return json_response({"request_id": new_request_id(),
                                  "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
        output, usage = images.task_output(task, emu.base_url(request))
        body = {"request_id": new_request_id(), "output": output}
        if usage is not None:
            body["usage"] = usage
        return json_response(body)

    async def cancel(self, request: web.Request) -> web.Response:
        emu = self.emu
        try:
            emu.authorize(request)
            emu.stats.record("task_cancel", headers=request.headers)
            emu.tasks.cancel(request.match_info["task_id"])
        except EmulatorError as error:
            return error_response(error)
        return json_response({"request_id": new_request_id()})

    async def list(self, request: web.Request) -> web.Response:
        emu = self.emu
        try:
            emu.authorize(request)
            emu.stats.record("task_list", headers=request.headers)
            page_no = max(1, int(request.query.get("page_no", 1)))
            page_size = min(100, max(1, int(request.query.get("page_size", 10))))
        except ValueError:
            return error_response(EmulatorError(400, "InvalidParameter", "Invalid paging."))
        except EmulatorError as error:
            return error_response(error)
        emu.tasks.advance()
        wanted_status = request.query.get("status")
        wanted_model = request.query.get("model_name")
        rows = [t for t in sorted(emu.tasks.tasks.values(), key=lambda t: -t.submitted)
                if (not wanted_status or t.status == wanted_status)
                and (not wanted_model or t.model == wanted_model)]
        page = rows[(page_no - 1) * page_size: page_no * page_size]
        data = [{"task_id": t.task_id, "status": t.status, "model_name": t.model,
                 "gmt_create": int(t.submitted * 1000), "region": "cn-beijing",
                 "start_time": int((t.started or t.submitted) * 1000),
                 "end_time": int(t.ended * 1000) if t.ended else None,
                 "request_id": new_request_id()} for t in page]
        return json_response({"total": len(rows), "data": data, "page_no": page_no,
                              "page_size": page_size, "request_id": new_request_id(),
                              "total_page": max(1, -(-len(rows) // page_size))})

    async def image(self, request: web.Request) -> web.Response:
        emu = self.emu
        emu.stats.record("image_download")
        task = emu.tasks.tasks.get(request.match_info["task_id"])
        if emu.config.images_expired or task is None or task.status != "SUCCEEDED":
            # What OSS answers for an expired signed URL.
            return web.Response(status=403, content_type="application/xml",
                                text="<Error><Code>AccessDenied</Code>"
                                     "<Message>Request has expired.</Message></Error>")
        return web.Response(body=images.render_png(f"{task.task_id}/{request.match_info['index']}"),
                            content_type="image/png")


class EmbeddingHandlers:
    """Both embedding endpoints: same checks, faults and directives (in any text)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def _checked(self, request: web.Request, endpoint: str, texts_of):
        emu = self.emu
        body = await emu.read_json(request)
        texts = texts_of(body)
        found = emu.directives_of(request, [t for t in (texts if isinstance(texts, list)
                                                         else [texts]) if isinstance(t, str)])
        emu.stats.record(endpoint, model=body.get("model"), headers=request.headers,
                         directive=knobs.signature(found) or None)
        emu.authorize(request)
        emu.throttle("embeddings", emu.config.rate_limit_rps)
        await emu.delay(found)
        await emu.apply_fault(request, emu.chosen_fault(found), found)
        return body, texts

    async def native(self, request: web.Request) -> web.Response:
        try:
            body, texts = await self._checked(
                request, "embeddings", lambda b: (b.get("input") or {}).get("texts")
                if isinstance(b.get("input"), dict) else None)
            parameters = body.get("parameters") or {}
            _, texts, dimension = embeddings.check(body.get("model"), texts,
                                                   parameters.get("dimension"))
        except EmulatorError as error:
            return error_response(error)
        return json_response(embeddings.native_body(body["model"], texts, dimension,
                                                    new_request_id()))

    async def compatible(self, request: web.Request) -> web.Response:
        try:
            body, texts = await self._checked(request, "compatible_embeddings",
                                              lambda b: b.get("input"))
            _, texts, dimension = embeddings.check(body.get("model"), texts,
                                                   body.get("dimensions"))
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise EmulatorError(400, "InvalidParameter",
                                    "encoding_format must be float or base64")
        except EmulatorError as error:
            return openai_error_response(error)
        return json_response(embeddings.compatible_body(body["model"], texts, dimension,
                                                        encoding, new_request_id()))


class UploadHandlers:
    """The temporary file upload: getPolicy (DashScope) and the form POST (OSS)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def policy(self, request: web.Request) -> web.Response:
        emu = self.emu
        try:
            emu.stats.record("upload_policy", model=request.query.get("model"),
                             headers=request.headers)
            emu.authorize(request)
            if request.query.get("action") != "getPolicy" or not request.query.get("model"):
                raise EmulatorError(400, "InvalidParameter",
                                    "action=getPolicy and model are required.")
        except EmulatorError as error:
            return error_response(error)
        key = request.headers["Authorization"].removeprefix("Bearer ")
        data = emu.uploads.issue(request.query["model"], key,
                                 emu.base_url(request) + uploads.UPLOAD_PATH)
        return json_response({"data": data, "request_id": new_request_id()})

    async def store(self, request: web.Request) -> web.Response:
        emu = self.emu
        emu.stats.record("upload_file", headers=request.headers)
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _oss_error(400, "InvalidArgument", "The form has no file.")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            emu.uploads.store(fields, upload.file.read(), upload.content_type)
        except EmulatorError as error:
            return _oss_error(error.status, error.code, error.message)
        return web.Response(status=int(fields.get("success_action_status") or 204))

    async def list(self, _request: web.Request) -> web.Response:
        """What was uploaded: key, model, type, size and digest (tests compare the bytes)."""
        return json_response({"objects": [
            {"key": o.key, "model": o.model, "content_type": o.content_type,
             "size": len(o.data), "sha256": hashlib.sha256(o.data).hexdigest()}
            for o in self.emu.uploads.objects.values()]})


def _oss_error(status: int, code: str, message: str) -> web.Response:
    """OSS answers errors in XML."""
    return web.Response(status=status, content_type="application/xml",
                        text=f"<Error><Code>{code}</Code><Message>{message}</Message></Error>")


class AdminHandlers:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def health(self, _request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def stats(self, _request: web.Request) -> web.Response:
        self.emu.tasks.advance()
        snapshot = self.emu.stats.snapshot()
        statuses: dict[str, int] = {}
        for task in self.emu.tasks.tasks.values():
            statuses[task.status] = statuses.get(task.status, 0) + 1
        snapshot["tasks"] = statuses
        return json_response(snapshot)

    async def tasks(self, _request: web.Request) -> web.Response:
        """Every image task with its timeline and the times it was queried."""
        self.emu.tasks.advance()
        return json_response({"tasks": [t.summary() for t in self.emu.tasks.tasks.values()]})

    async def reset(self, _request: web.Request) -> web.Response:
        self.emu.reset()
        return json_response({"status": "reset"})

    async def get_config(self, _request: web.Request) -> web.Response:
        return json_response(self.emu.config.__dict__)

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            self.emu.config.update(changes)
        except (ValueError, KeyError, TypeError) as exc:
            return json_response({"error": f"bad config: {exc}"}, 400)
        return json_response(self.emu.config.__dict__)
