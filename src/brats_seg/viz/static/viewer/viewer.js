// brats-seg view: one patient at a time in NiiVue. The page's data (cases, modalities, label
// colours) is the JSON in #view-config; each case's volumes come from its own script,
// cases/<n>_<case>.js, which calls bratsView.receive(id, volumes) (a script loads from file://,
// where fetch does not). body[data-state] says loading, ready or error.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("view-config").textContent);
  const $ = (id) => document.getElementById(id);
  // The voxel axis the slice slider moves, per view (x: sagittal, y: coronal, z: axial).
  const SLIDER_AXIS = { multiplanar: 2, axial: 2, coronal: 1, sagittal: 0, render: 2 };
  const AXIS_NAMES = ["sagittal", "coronal", "axial"];
  const state = {
    caseIndex: 0,
    modality: config.first_modality,
    opacity: config.opacity,
    show: { truth: true, prediction: true },
    hidden: new Set(),  // class values switched off
    plane: "multiplanar",
    volumes: null,  // the shown case's NVImages by key
    decoded: {},  // every volume of the shown case decoded so far
    data: null,  // the shown case's volumes as its script gave them
    summary: "",  // the status line of the shown case
  };
  const received = new Map();  // case id -> its script's volumes (base64)
  const waiting = new Map();  // case id -> resolve
  let loadToken = 0;

  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1],
    show3Dcrosshair: true,
    crosshairColor: [0.3, 0.6, 1, 0.8],
    crosshairWidth: 1,
    dragAndDropEnabled: false,
    isColorbar: false,
    logLevel: "error",
    loadingText: "",
  });

  function setState(name, text) {
    document.body.dataset.state = name;
    $("status").textContent = text;
  }

  function fail(err) {
    setState("error", "error: " + (err && err.message ? err.message : err));
    console.error("brats-seg view:", err);
  }

  function labelColormap() {
    const map = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: ["background"] };
    for (const cls of config.classes) {
      map.R.push(cls.rgb[0]);
      map.G.push(cls.rgb[1]);
      map.B.push(cls.rgb[2]);
      map.A.push(state.hidden.has(cls.value) ? 0 : 255);
      map.I.push(cls.value);
      map.labels.push(cls.name);
    }
    return map;
  }

  function loadCaseScript(entry) {
    if (received.has(entry.id)) return Promise.resolve(received.get(entry.id));
    return new Promise((resolve, reject) => {
      waiting.set(entry.id, resolve);
      const tag = document.createElement("script");
      tag.src = entry.script;
      tag.onerror = () => reject(new Error("cannot read " + entry.script));
      document.body.appendChild(tag);
    });
  }

  // A volume of the shown case, decoded when it is first needed (a BraTS image takes seconds).
  async function volume(entry, data, key) {
    const cache = state.decoded;
    if (!(key in cache)) {
      const isLabel = key === "truth" || key === "prediction";
      cache[key] = data[key] === null ? null : await niivue.NVImage.loadFromBase64({
        base64: data[key],
        name: entry.id + "_" + key + ".nii.gz",
        colormap: "gray",
        opacity: isLabel ? state.opacity : 1,
      });
      if (isLabel && cache[key]) cache[key].setColormapLabel(labelColormap());
    }
    return cache[key];
  }

  async function showCase(index) {
    const token = ++loadToken;
    const entry = config.cases[index];
    state.caseIndex = index;
    setState("loading", "loading " + entry.id);
    const data = await loadCaseScript(entry);
    state.decoded = {};
    state.data = data;
    const volumes = {};
    for (const key of [state.modality, "truth", "prediction"]) {
      volumes[key] = await volume(entry, data, key);
    }
    if (token !== loadToken) return;  // another case was chosen meanwhile
    state.volumes = volumes;
    $("show-truth").disabled = !volumes.truth;
    $("show-prediction").disabled = !volumes.prediction;
    compose();
    nv.scene.crosshairPos = nv.mm2frac(entry.focus_mm);
    nv.drawScene();
    setPlane(state.plane);
    const parts = [entry.id, entry.shape.join("x")];
    if (!volumes.truth) parts.push("no truth");
    if (!volumes.prediction) parts.push("no prediction");
    state.summary = parts.join(" · ");
    setState("ready", state.summary);
  }

  async function showModality(key) {
    state.modality = key;
    const entry = config.cases[state.caseIndex];
    if (!state.volumes) return;
    if (!state.volumes[key]) {
      setState("loading", "loading " + key);
      const token = loadToken;
      const decoded = await volume(entry, state.data, key);
      if (token !== loadToken) return;
      state.volumes[key] = decoded;
    }
    if (state.modality !== key) return;  // another one was chosen meanwhile
    compose();
    setState("ready", state.summary);
  }

  // The shown layers: the modality, then the truth and the prediction where switched on.
  function compose() {
    const v = state.volumes;
    const layers = [v[state.modality]];
    for (const key of ["truth", "prediction"]) {
      if (v[key] && state.show[key]) layers.push(v[key]);
    }
    for (const vol of nv.volumes.slice()) {
      if (!layers.includes(vol)) nv.removeVolume(vol);
    }
    layers.forEach((vol, i) => {
      if (!nv.volumes.includes(vol)) nv.addVolume(vol);
      if (nv.volumes.indexOf(vol) !== i) nv.setVolume(vol, i);
    });
    for (let i = 1; i < layers.length; i++) layers[i].opacity = state.opacity;
    nv.updateGLVolume();
  }

  function currentVoxel() {
    return Array.from(nv.frac2vox(nv.scene.crosshairPos)).map(Math.round);
  }

  function setPlane(plane) {
    state.plane = plane;
    const types = {
      multiplanar: nv.sliceTypeMultiplanar,
      axial: nv.sliceTypeAxial,
      coronal: nv.sliceTypeCoronal,
      sagittal: nv.sliceTypeSagittal,
      render: nv.sliceTypeRender,
    };
    nv.setSliceType(types[plane]);
    syncSlider();
  }

  function syncSlider() {
    const entry = config.cases[state.caseIndex];
    const axis = SLIDER_AXIS[state.plane];
    const slider = $("slice");
    slider.max = entry.shape[axis] - 1;
    const vox = currentVoxel();
    slider.value = vox[axis];
    $("slice-axis").textContent = AXIS_NAMES[axis];
    $("slice-value").textContent = vox[axis] + " / " + (entry.shape[axis] - 1);
  }

  function moveSlice(value) {
    const axis = SLIDER_AXIS[state.plane];
    const vox = currentVoxel();
    vox[axis] = Number(value);
    nv.scene.crosshairPos = nv.vox2frac(vox);
    nv.drawScene();
    syncSlider();
  }

  function buildControls() {
    $("title").textContent = config.title;
    document.title = config.title;
    const cases = $("case");
    config.cases.forEach((entry, i) => cases.add(new Option(entry.id, String(i))));
    cases.addEventListener("change", () => showCase(Number(cases.value)).catch(fail));

    for (const m of config.modalities) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "radio", name: "modality", value: m.key, id: "modality-" + m.key });
      input.checked = m.key === state.modality;
      input.addEventListener("change", () => showModality(m.key).catch(fail));
      label.append(input, " " + m.label);
      $("modalities").appendChild(label);
    }

    for (const cls of config.classes) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "checkbox", id: "label-" + cls.value, checked: true });
      input.addEventListener("change", () => {
        if (input.checked) state.hidden.delete(cls.value);
        else state.hidden.add(cls.value);
        for (const key of ["truth", "prediction"]) {
          if (state.volumes && state.volumes[key]) state.volumes[key].setColormapLabel(labelColormap());
        }
        nv.updateGLVolume();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = "rgb(" + cls.rgb.join(",") + ")";
      label.append(input, " ", swatch, cls.name);
      $("labels").appendChild(label);
    }

    for (const key of ["truth", "prediction"]) {
      $("show-" + key).addEventListener("change", (event) => {
        state.show[key] = event.target.checked;
        compose();
      });
    }
    const opacity = $("opacity");
    opacity.value = state.opacity;
    opacity.addEventListener("input", () => {
      state.opacity = Number(opacity.value);
      compose();
    });
    $("plane").addEventListener("change", (event) => setPlane(event.target.value));
    $("slice").addEventListener("input", (event) => moveSlice(event.target.value));
    nv.onLocationChange = () => syncSlider();
  }

  window.bratsView = {
    config,
    state,
    nv,
    receive(id, volumes) {
      received.set(id, volumes);
      const resolve = waiting.get(id);
      waiting.delete(id);
      if (resolve) resolve(volumes);
    },
    showCase,
  };

  async function start() {
    buildControls();
    await nv.attachToCanvas($("gl"));
    if (!config.cases.length) {
      setState("error", "no case to show");
      return;
    }
    await showCase(0);
  }

  start().catch(fail);
})();
