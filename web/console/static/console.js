// The console's progressive enhancement. Loaded from 'self' only (the CSP allows no inline
// script): CSRF on every htmx request and fetch, copy buttons, the playground's streamed chat
// (through /v1, like any client), and the usage charts (uPlot).
"use strict";
(function () {
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRFToken"] = csrfToken();
  });

  function setUpCopyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.querySelector(button.dataset.copy);
        if (!field) return;
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(done, function () {
            field.select(); document.execCommand("copy"); done();
          });
        } else {
          field.select(); document.execCommand("copy"); done();
        }
      });
    });
  }

  // --- playground chat -------------------------------------------------------------------
  function v1Token() {
    return fetch("/console/token", {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRFToken": csrfToken(), "Accept": "application/json"}
    }).then(function (response) {
      if (!response.ok) throw new Error("Your session has ended; sign in again.");
      return response.json();
    }).then(function (body) { return body.access_token; });
  }

  function setUpChat() {
    var form = document.getElementById("chat-form");
    if (!form) return;
    var output = document.getElementById("chat-output");
    var answer = document.getElementById("chat-answer");
    var reasoning = document.getElementById("chat-reasoning");
    var thinking = document.getElementById("chat-thinking");
    var status = document.getElementById("chat-status");
    var send = document.getElementById("chat-send");

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(form);
      var messages = [];
      var system = (data.get("system") || "").trim();
      if (system) messages.push({role: "system", content: system});
      messages.push({role: "user", content: data.get("prompt")});
      var body = {
        model: data.get("model"), messages: messages, stream: true,
        stream_options: {include_usage: true},
        temperature: parseFloat(data.get("temperature")),
        max_tokens: parseInt(data.get("max_tokens"), 10)
      };
      answer.textContent = ""; reasoning.textContent = ""; thinking.hidden = true;
      output.dataset.chunks = "0"; output.dataset.done = "false"; delete output.dataset.jobId;
      status.textContent = "Sending…"; send.disabled = true;
      v1Token().then(function (token) {
        return fetch("/v1/chat/completions", {
          method: "POST",
          headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json",
                    "Accept": "text/event-stream"},
          body: JSON.stringify(body)
        });
      }).then(function (response) {
        var jobId = response.headers.get("X-Job-ID");
        if (jobId) output.dataset.jobId = jobId;
        if (!response.ok) {
          return response.json().then(function (error) {
            throw new Error((error.error && error.error.message) || response.statusText);
          });
        }
        status.textContent = "Streaming…";
        return readStream(response.body.getReader(), function (chunk) {
          var choice = chunk.choices && chunk.choices[0];
          var delta = choice && choice.delta;
          if (delta && delta.reasoning_content) {
            thinking.hidden = false;
            reasoning.textContent += delta.reasoning_content;
          }
          if (delta && delta.content) answer.textContent += delta.content;
          output.dataset.chunks = String(parseInt(output.dataset.chunks, 10) + 1);
          if (chunk.usage) {
            status.textContent = chunk.usage.total_tokens + " tokens";
          }
          if (chunk.error) throw new Error(chunk.error.message);
        }).then(function () {
          output.dataset.done = "true";
          var link = document.createElement("a");
          link.href = "/console/jobs/" + encodeURIComponent(jobId || "");
          link.textContent = "job " + (jobId || "").slice(0, 8);
          status.textContent = (status.textContent === "Streaming…" ? "Done" :
                                "Done · " + status.textContent) + " · ";
          status.appendChild(link);
        });
      }).catch(function (error) {
        output.dataset.done = "error";
        status.textContent = error.message;
      }).finally(function () { send.disabled = false; });
    });
  }

  function readStream(reader, onChunk) {
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (result) {
        if (result.done) return;
        buffer += decoder.decode(result.value, {stream: true});
        var events = buffer.split("\n\n");
        buffer = events.pop();
        for (var i = 0; i < events.length; i++) {
          var lines = events[i].split("\n");
          for (var j = 0; j < lines.length; j++) {
            if (lines[j].indexOf("data:") !== 0) continue;
            var payload = lines[j].slice(5).trim();
            if (payload === "[DONE]") return;
            onChunk(JSON.parse(payload));
          }
        }
        return pump();
      });
    }
    return pump();
  }

  // --- usage charts ----------------------------------------------------------------------
  var PALETTE = ["#1f5fbf", "#b3261e", "#1e7d32", "#8e44ad", "#b35900", "#00796b", "#5d4037"];

  function drawChart(container, days, models, values, label) {
    if (!container || typeof uPlot === "undefined") return;
    var xs = days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
    var series = [{label: "Day"}].concat(models.map(function (model, i) {
      return {label: model, stroke: PALETTE[i % PALETTE.length], width: 2,
              points: {show: true, size: 4}};
    }));
    var data = [xs].concat(models.map(function (model) { return values[model]; }));
    var width = function () { return Math.max(280, container.clientWidth); };
    var chart = new uPlot({
      width: width(), height: 220, series: series,
      axes: [{}, {label: label, size: 70}],
      scales: {x: {time: true}}
    }, data, container);
    window.addEventListener("resize", function () {
      chart.setSize({width: width(), height: 220});
    });
    container.dataset.rendered = "true";
    container.dataset.series = String(models.length);
  }

  function setUpUsage() {
    var source = document.getElementById("usage-data");
    if (!source) return;
    var usage = JSON.parse(source.textContent);
    drawChart(document.getElementById("chart-tokens"), usage.days, usage.models,
              usage.tokens, "tokens");
    drawChart(document.getElementById("chart-cost"), usage.days, usage.models,
              usage.cost, "cost");
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpCopyButtons();
    setUpChat();
    setUpUsage();
    // What the tests and the benchmark wait for: the page is interactive from here on.
    document.documentElement.dataset.readyAt = performance.now().toFixed(1);
    document.documentElement.dataset.ready = "true";
  });
})();
