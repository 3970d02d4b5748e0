// Try the line: a keypad phone that plays a call through the line's own webhooks.
// The server (staff/trial.py) makes each request as Twilio would and returns the line's TwiML;
// this page plays it as Twilio does: <Say> with the browser's speech synthesis in the verb's
// language, <Play>, <Pause>, <Gather> (keys, numDigits, finishOnKey, timeout), <Record> (the
// microphone where allowed, else silence), <Redirect> and <Hangup>. Plain JS, no build step.
(function () {
  "use strict";

  var phone = document.getElementById("phone");
  if (!phone) return;

  var statusLine = document.getElementById("phone-status");
  var clock = document.getElementById("phone-clock");
  var log = document.getElementById("call-log");
  var callButton = document.getElementById("call-button");
  var hangupButton = document.getElementById("hangup-button");
  var recordActions = document.getElementById("record-actions");
  var keys = Array.prototype.slice.call(phone.querySelectorAll(".key"));
  var speakAloud = document.getElementById("speak-aloud");
  var useMicrophone = document.getElementById("use-microphone");

  var call = null; // {token, sid, started, over, onKey, onHangup, audio}

  function setState(state, text) {
    phone.setAttribute("data-state", state);
    if (text) statusLine.textContent = text;
    keys.forEach(function (k) { k.disabled = !call || call.over; });
    callButton.disabled = !!(call && !call.over);
    hangupButton.disabled = !call || call.over;
    recordActions.hidden = state !== "record";
  }

  function note(kind, text, lang) {
    var item = document.createElement("li");
    item.className = kind;
    if (lang) { item.setAttribute("lang", lang); item.setAttribute("data-lang", lang); }
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = { said: "Line" + (lang ? " · " + lang : ""), played: "Line plays", pressed: "You", note: "·", error: "Problem" }[kind] || kind;
    item.appendChild(who);
    item.appendChild(document.createTextNode(" " + text));
    log.appendChild(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  function tick() {
    if (!call || call.over) return;
    var s = Math.floor((Date.now() - call.started) / 1000);
    clock.textContent = call.sid + " · " + Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    setTimeout(tick, 1000);
  }

  // --- talking to the server ------------------------------------------------------------------

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": phone.getAttribute("data-csrf"), "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return { error: "the server answered " + r.status }; }).then(function (data) {
        if (!r.ok) throw new Error(data.error || data.description || "the server answered " + r.status);
        return data;
      });
    });
  }

  function step(body) {
    body.call = call.token;
    return post(phone.getAttribute("data-next-url"), body);
  }

  // --- what the caller hears ----------------------------------------------------------------

  function stopSound() {
    if (window.speechSynthesis) window.speechSynthesis.cancel();
    if (call && call.audio) { call.audio.pause(); call.audio = null; }
  }

  function voiceFor(lang) {
    if (!window.speechSynthesis) return null;
    var voices = window.speechSynthesis.getVoices();
    var exact = voices.filter(function (v) { return v.lang === lang; })[0];
    var prefix = lang.split("-")[0];
    return exact || voices.filter(function (v) { return v.lang.split(/[-_]/)[0] === prefix; })[0] || null;
  }

  function say(el) {
    var text = (el.textContent || "").trim();
    var lang = el.getAttribute("language") || "en-US";
    note("said", text, lang);
    return new Promise(function (resolve) {
      var finished = false;
      function done() { if (!finished) { finished = true; resolve(); } }
      // A safety net: some browsers (headless ones, ones without a voice) never end an utterance.
      var reading = 600 + text.length * 75;
      if (!speakAloud.checked || !window.speechSynthesis || !window.SpeechSynthesisUtterance) {
        setTimeout(done, Math.min(reading, 2500));
        return;
      }
      setTimeout(done, reading + 4000);
      var utterance = new SpeechSynthesisUtterance(text);
      utterance.lang = lang;
      var voice = voiceFor(lang);
      if (voice) utterance.voice = voice;
      utterance.onend = done;
      utterance.onerror = done;
      window.speechSynthesis.speak(utterance);
    });
  }

  function play(el) {
    var url = (el.textContent || "").trim();
    var loops = parseInt(el.getAttribute("loop") || "1", 10) || 1;
    note("played", url.split("/").pop());
    var chain = Promise.resolve();
    for (var i = 0; i < Math.min(loops, 10); i++) {
      chain = chain.then(function () {
        return new Promise(function (resolve) {
          var audio = new Audio(url);
          call.audio = audio;
          audio.onended = resolve;
          audio.onerror = function () { note("error", "could not play " + url); resolve(); };
          audio.play().catch(function () { resolve(); });
        });
      });
    }
    return chain;
  }

  function beep() {
    try {
      var Context = window.AudioContext || window.webkitAudioContext;
      var ctx = new Context();
      var tone = ctx.createOscillator();
      tone.frequency.value = 880;
      tone.connect(ctx.destination);
      tone.start();
      tone.stop(ctx.currentTime + 0.3);
    } catch (e) { /* no sound: the log says it */ }
    note("note", "beep");
  }

  // --- the verbs ------------------------------------------------------------------------------

  function spoken(el) {
    if (el.tagName === "Say") return say(el);
    if (el.tagName === "Play") return play(el);
    if (el.tagName === "Pause") return sleep((parseInt(el.getAttribute("length") || "1", 10) || 1) * 1000);
    return Promise.resolve();
  }

  // Resolves with the keys pressed, or null when the caller pressed nothing (Twilio then goes
  // on to the next verb), or "hangup".
  function gather(el) {
    var numDigits = parseInt(el.getAttribute("numDigits") || "0", 10) || 0;
    var finishOnKey = el.hasAttribute("finishOnKey") ? el.getAttribute("finishOnKey") : "#";
    var timeout = parseInt(el.getAttribute("timeout") || "5", 10);
    return new Promise(function (resolve) {
      var digits = "", over = false, timer = null;
      function finish(value) {
        if (over) return;
        over = true;
        clearTimeout(timer);
        call.onKey = null;
        call.onHangup = null;
        stopSound();
        resolve(value);
      }
      function wait() { clearTimeout(timer); timer = setTimeout(function () { finish(digits || null); }, timeout * 1000); }
      call.onKey = function (key) {
        if (finishOnKey && key === finishOnKey) { finish(digits || null); return; }
        digits += key;
        if (numDigits && digits.length >= numDigits) finish(digits); else wait();
      };
      call.onHangup = function () { finish("hangup"); };
      setState("gather", "Listening for a key…");
      var children = Array.prototype.slice.call(el.children);
      (function next(i) {
        if (over) return;
        if (i >= children.length) { setState("gather", "Your turn: press a key (" + timeout + " s)."); wait(); return; }
        spoken(children[i]).then(function () { next(i + 1); });
      })(0);
    });
  }

  function record(el) {
    var maxLength = parseInt(el.getAttribute("maxLength") || "3600", 10);
    var finishOnKey = el.getAttribute("finishOnKey") || "1234567890*#";
    if (el.getAttribute("playBeep") !== "false") beep();
    return new Promise(function (resolve) {
      var started = Date.now(), over = false, recorder = null, chunks = [], stream = null, timer = null;
      var item = note("note", "Recording… (" + (finishOnKey.indexOf("#") >= 0 ? "# or Stop ends it" : "Stop ends it") + ")");
      function finish(digits, silent) {
        if (over) return;
        over = true;
        clearTimeout(timer);
        call.onKey = null;
        call.onHangup = null;
        var seconds = silent ? 0 : Math.max(1, Math.round((Date.now() - started) / 1000));
        if (recorder && recorder.state !== "inactive") {
          recorder.onstop = function () {
            var audio = document.createElement("audio");
            audio.controls = true;
            audio.src = URL.createObjectURL(new Blob(chunks, { type: recorder.mimeType }));
            item.appendChild(audio);
          };
          recorder.stop();
        }
        if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
        item.lastChild.textContent = silent ? " Skipped: nothing recorded." : " Recorded " + seconds + " s" + (recorder ? " (kept only in this browser)." : " of silence (no microphone).");
        resolve({ seconds: seconds, digits: digits });
      }
      call.onKey = function (key) { if (finishOnKey.indexOf(key) >= 0) finish(key, false); };
      call.onHangup = function () { finish("hangup", false); };
      document.getElementById("stop-recording").onclick = function () { finish("#", false); };
      document.getElementById("skip-recording").onclick = function () { finish("#", true); };
      timer = setTimeout(function () { finish("", false); }, maxLength * 1000);
      setState("record", "Recording your comment: press # when done.");
      if (useMicrophone.checked && navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder) {
        navigator.mediaDevices.getUserMedia({ audio: true }).then(function (s) {
          if (over) { s.getTracks().forEach(function (t) { t.stop(); }); return; }
          stream = s;
          recorder = new MediaRecorder(s);
          recorder.ondataavailable = function (e) { if (e.data && e.data.size) chunks.push(e.data); };
          recorder.start();
        }).catch(function () { note("note", "No microphone: recording silence."); });
      }
    });
  }

  // Play one TwiML answer; resolves with the next request to make, or null when the call is over.
  function run(twiml) {
    var doc = new DOMParser().parseFromString(twiml, "text/xml");
    var root = doc.documentElement;
    if (!root || root.tagName !== "Response") {
      note("error", "The line's answer is not TwiML.");
      return Promise.resolve({ kind: "hangup" });
    }
    var verbs = Array.prototype.slice.call(root.children);
    function next(i) {
      if (!call || call.over) return Promise.resolve(null);
      if (i >= verbs.length) return Promise.resolve({ kind: "hangup", note: "The call ended." });
      var el = verbs[i];
      switch (el.tagName) {
        case "Say": case "Play": case "Pause":
          setState("speaking", "The line is speaking…");
          return spoken(el).then(function () { return next(i + 1); });
        case "Gather":
          return gather(el).then(function (digits) {
            if (digits === "hangup") return { kind: "hangup", note: "You hung up." };
            if (digits === null) { note("note", "(no key: the menu timed out)"); return next(i + 1); }
            note("pressed", "pressed " + digits);
            return { kind: "gather", url: el.getAttribute("action"), digits: digits };
          });
        case "Record":
          return record(el).then(function (taken) {
            return {
              kind: "record", url: el.getAttribute("action"), seconds: taken.seconds, digits: taken.digits,
              status_callback: el.getAttribute("recordingStatusCallback"), then_hangup: taken.digits === "hangup"
            };
          });
        case "Redirect":
          return Promise.resolve({ kind: "redirect", url: (el.textContent || "").trim() });
        case "Hangup":
          return Promise.resolve({ kind: "hangup", note: "The line hung up." });
        default:
          note("note", "(" + el.tagName + " is not played here)");
          return next(i + 1);
      }
    }
    return next(0);
  }

  function seconds() { return Math.max(1, Math.round((Date.now() - call.started) / 1000)); }

  function end(text) {
    if (!call || call.over) return;
    var ending = call;
    ending.over = true;
    stopSound();
    setState("ended", text || "The call ended.");
    step({ kind: "hangup", seconds: Math.max(1, Math.round((Date.now() - ending.started) / 1000)) }).catch(function () {});
    var link = document.createElement("a");
    link.href = phone.getAttribute("data-inbox-url");
    link.textContent = "See test calls' comments in the inbox";
    var item = note("note", (text || "The call ended.") + " ");
    item.appendChild(link);
  }

  function follow(request) {
    if (!call || call.over || request === null) return;
    if (request.kind === "hangup") { end(request.note); return; }
    var body = { kind: request.kind, url: request.url };
    if (request.digits !== undefined) body.digits = request.digits;
    if (request.seconds !== undefined) body.seconds = request.seconds;
    if (request.status_callback) body.status_callback = request.status_callback;
    setState("waiting", "…");
    step(body).then(function (answer) {
      if (answer.status !== 200) throw new Error("the line answered " + answer.status);
      if (request.then_hangup) { end("You hung up while recording."); return; }
      return run(answer.twiml).then(follow);
    }).catch(function (error) { note("error", String(error.message || error)); end("The call failed."); });
  }

  callButton.addEventListener("click", function () {
    var choice = phone.querySelector('input[name="script"]:checked');
    var script = choice ? choice.value : "draft";
    log.innerHTML = "";
    call = { token: null, sid: "", started: Date.now(), over: false, onKey: null, onHangup: null, audio: null };
    setState("dialing", "Calling the " + (script === "draft" ? "draft" : "live") + " script…");
    post(phone.getAttribute("data-start-url"), { script: script }).then(function (answer) {
      call.token = answer.call;
      call.sid = answer.call_sid;
      phone.setAttribute("data-call-sid", answer.call_sid);
      note("note", "Test call " + answer.call_sid + " on the " + script + " script.");
      tick();
      if (answer.status !== 200) throw new Error("the line answered " + answer.status);
      return run(answer.twiml).then(follow);
    }).catch(function (error) { note("error", String(error.message || error)); if (call) { call.over = true; } setState("ended", "The call failed."); });
  });

  hangupButton.addEventListener("click", function () {
    if (!call || call.over) return;
    if (call.onHangup) call.onHangup(); else end("You hung up.");
  });

  function press(key) {
    if (!call || call.over) return;
    var button = phone.querySelector('.key[data-key="' + key + '"]');
    if (button) { button.classList.add("pressed"); setTimeout(function () { button.classList.remove("pressed"); }, 150); }
    if (call.onKey) call.onKey(key);
  }

  keys.forEach(function (k) { k.addEventListener("click", function () { press(k.getAttribute("data-key")); }); });
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (e.ctrlKey || e.metaKey || e.altKey || tag === "input" || tag === "textarea" || tag === "select") return;
    if (/^[0-9*#]$/.test(e.key)) { e.preventDefault(); press(e.key); }
  });
  setState("idle");
})();
