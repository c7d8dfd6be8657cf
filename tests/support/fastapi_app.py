"""The seeds' stack as a real upstream for tests/proxy_fastapi.rs: a FastAPI
app, served by gunicorn with uvicorn workers on a Unix socket."""

import asyncio
import hashlib
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request):
    return {
        "id": item_id,
        "pid": os.getpid(),
        "x_forwarded_for": request.headers.get("x-forwarded-for"),
        "x_forwarded_proto": request.headers.get("x-forwarded-proto"),
        "x_request_id": request.headers.get("x-request-id"),
    }


@app.get("/stream")
async def stream(lines: int = 50):
    async def produce():
        for i in range(lines):
            yield f"line {i}\n"
            await asyncio.sleep(0.002)

    return StreamingResponse(produce(), media_type="text/plain")


@app.post("/upload")
async def upload(request: Request):
    digest = hashlib.sha256()
    size = 0
    async for piece in request.stream():
        digest.update(piece)
        size += len(piece)
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_text("echo: " + message)
    except WebSocketDisconnect:
        pass
