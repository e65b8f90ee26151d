// The agent page: one question at a time through the streaming chat endpoint; every piece of
// server text is placed with textContent (never parsed as HTML).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form"), question = $("question"), askButton = $("ask"), stopButton = $("stop");
  const tokenRow = $("token-row"), tokenInput = $("token");
  const trajectory = $("trajectory"), answer = $("answer"), sources = $("sources"), status = $("status");
  const BLOCK = /<(think|search|answer)>([\s\S]*?)(?:<\/\1>|$)/g;
  let controller = null;
  let answerText = "";

  tokenInput.value = sessionStorage.getItem("searchr1-token") || "";

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setStatus(text, kind) {
    status.textContent = text;
    status.dataset.kind = kind || "info";
  }

  function step(kind, label) {
    const item = el("li", "step " + kind);
    item.dataset.kind = kind;
    item.append(el("span", "label", label));
    trajectory.append(item);
    item.scrollIntoView({block: "nearest"});
    return item;
  }

  function addTurn(text) {
    let tagged = false;
    for (const m of text.matchAll(BLOCK)) {
      tagged = true;
      if (m[1] === "think" && m[2].trim()) step("think", "think").append(el("span", "body", m[2].trim()));
    }
    if (!tagged && text.trim()) step("text", "model").append(el("span", "body", text.trim()));
  }

  function addSearch(event) {
    const item = step("search", "search");
    item.append(el("q", "query", event.query));
    if (event.error) item.append(el("p", "error", "search failed: " + event.error));
    const list = el("ol", "passages");
    for (const p of event.passages) {
      const details = el("details", "passage");
      const summary = el("summary");
      summary.append(el("span", "title", p.title), el("span", "pid", p.id),
                     el("span", "score", "score " + Number(p.score).toFixed(2)));
      details.append(summary, el("p", "text", p.text));
      const entry = el("li");
      entry.append(details);
      list.append(entry);
    }
    item.append(list);
  }

  function showSources(citations) {
    sources.replaceChildren();
    for (const c of citations) {
      const item = el("li", "source");
      item.append(el("span", "title", c.title), el("span", "pid", c.id));
      sources.append(item);
    }
    if (!citations.length) sources.append(el("li", "muted", "no passages were retrieved"));
  }

  function onChunk(chunk) {
    if (chunk.error) {
      setStatus("The agent failed: " + chunk.error.message, "error");
      return;
    }
    const event = chunk.searchr1_event;
    if (event && event.type === "turn") addTurn(event.text);
    if (event && event.type === "search") addSearch(event);
    const choice = (chunk.choices || [])[0];
    if (choice && choice.delta && choice.delta.content) {
      answerText += choice.delta.content;
      answer.textContent = answerText;
      answer.dataset.state = "answered";
    }
    const result = chunk.searchr1;
    if (result) {
      if (result.answer !== null) step("answer", "answer").append(el("span", "body", result.answer));
      else {
        answer.textContent = "No answer (" + result.finish_reason + ").";
        answer.dataset.state = "none";
      }
      showSources(result.citations);
      const n = result.searches.length;
      setStatus("Done: " + result.turns + " turn" + (result.turns === 1 ? "" : "s") + ", " + n + " search" +
                (n === 1 ? "" : "es") + ".", "done");
    }
  }

  function onBlock(block) {
    for (const line of block.split("\n")) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data && data !== "[DONE]") onChunk(JSON.parse(data));
    }
  }

  async function httpError(response) {
    let message = "HTTP " + response.status;
    try {
      message += ": " + (await response.json()).error.message;
    } catch (e) {
      message += " " + response.statusText;
    }
    if (response.status === 401) {
      tokenRow.hidden = false;
      tokenInput.focus();
      message += " Enter the access token and ask again.";
    }
    setStatus(message, "error");
  }

  async function ask(text) {
    trajectory.replaceChildren();
    sources.replaceChildren();
    answerText = "";
    answer.textContent = "…";
    answer.dataset.state = "waiting";
    setStatus("Asking…", "busy");
    const headers = {"Content-Type": "application/json"};
    const token = tokenInput.value.trim();
    sessionStorage.setItem("searchr1-token", token);
    if (token) headers.Authorization = "Bearer " + token;
    const body = JSON.stringify({model: "searchr1-agent", stream: true, messages: [{role: "user", content: text}]});
    const response = await fetch("v1/chat/completions", {method: "POST", headers, body, signal: controller.signal});
    if (!response.ok) return httpError(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        onBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    if (buffer.trim()) onBlock(buffer);
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = question.value.trim();
    if (!text || controller) return;
    controller = new AbortController();
    askButton.disabled = true;
    stopButton.disabled = false;
    try {
      await ask(text);
    } catch (err) {
      setStatus(err.name === "AbortError" ? "Stopped." : "Could not reach the agent: " + err.message, "error");
    } finally {
      if (answer.dataset.state === "waiting") answer.textContent = "—";
      controller = null;
      askButton.disabled = false;
      stopButton.disabled = true;
      if (document.activeElement !== tokenInput) question.focus();   // a 401 leaves focus on the token
    }
  });

  stopButton.addEventListener("click", () => controller && controller.abort());

  fetch("health").then((r) => r.json()).then((health) => {
    $("model").textContent = "model: " + health.model;
    if (health.auth_required) tokenRow.hidden = false;
  }).catch((err) => {
    tokenRow.hidden = false;
    setStatus("Cannot reach the agent service: " + err.message, "error");
  });
})();
