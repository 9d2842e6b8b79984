// Mouse-over hints for the suite's sampler names (the WebUI's hints.js shows titles[text] on hover).
// UI sugar only: nothing the API depends on.
(function() {
    if (typeof titles === "undefined") {
        return;
    }
    var cfgpp = "CFG++ (arXiv 2406.08070): guidance stays on the data manifold. Use a low CFG: by default " +
        "lambda = CFG / 12.5 as in DDIM CFG++ (Settings > Sampler parameters to switch to CFG = lambda).";
    titles["Euler CFG++"] = "Euler with CFG++ guidance. " + cfgpp;
    titles["Euler a CFG++"] = "Euler Ancestral with CFG++ guidance. " + cfgpp;
    titles["DPM++ 2M CFG++"] = "DPM++ 2M with CFG++ guidance. " + cfgpp;
    titles["DPM++ 2S a CFG++"] = "DPM++ 2S Ancestral with CFG++ guidance. " + cfgpp;
    titles["HiDiffusion"] = "RAU-Net + MSW-MSA: generate at 2-4x the model's native size without duplicated subjects, faster.";
    titles["IC-Light"] = "Relight a foreground subject with IC-Light fc (text / light direction) or fbc (background).";
})();
