/*
 * 兰溪电商政策函数（lanxi-xl）— Office.js 自定义函数运行时。
 *
 * Served by lanxi_xl.server at /xlwings/custom-functions-code: the server fills in
 * the placeholders and appends one CustomFunctions.associate(...) per function.
 * Every call is forwarded to the server with the body xlwings Server expects
 * (func_name, args, caller_address, culture_info_name, date_format, version,
 * runtime, client). The server answers {"result": [[...]]}, plus, when some rows
 * of a range were bad, "errors": [[row, col, message]]: those cells become
 * #VALUE! carrying the Chinese message (hover the error flag to read it).
 * A bad single input comes back as HTTP 400 {"detail": message}.
 */
(function () {
  "use strict";

  const CALL_PATH = "placeholder_custom_functions_call_path";
  const XLWINGS_VERSION = "placeholder_xlwings_version";
  let runtime = "1.1";

  Office.onReady(function () {
    for (const version of ["1.4", "1.3", "1.2"]) {
      if (Office.context.requirements.isSetSupported("CustomFunctionsRuntime", version)) {
        runtime = version;
        break;
      }
    }
  });

  function cellError(message) {
    // CustomFunctions.Error needs runtime 1.2; older Excel shows the text instead.
    if (runtime === "1.1") {
      return message;
    }
    return new CustomFunctions.Error(CustomFunctions.ErrorCode.invalidValue, message);
  }

  function fail(message) {
    if (runtime === "1.1") {
      return [[message]];
    }
    throw cellError(message);
  }

  async function lanxiCall(funcName, argsWithInvocation) {
    await Office.onReady();
    const args = argsWithInvocation.slice(0, -1);
    const invocation = argsWithInvocation[argsWithInvocation.length - 1] || {};
    const body = {
      client: "Office.js",
      func_name: funcName,
      args: args,
      caller_address: invocation.address || null,
      culture_info_name: Office.context.contentLanguage || null,
      date_format: null,
      version: XLWINGS_VERSION,
      runtime: runtime,
    };
    let response;
    try {
      response = await fetch(window.location.origin + CALL_PATH, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (error) {
      return fail("无法连接兰溪政策计算服务，请检查网络或联系管理员：" + error);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok || data === null) {
      return fail((data && data.detail) || "兰溪政策计算服务出错（HTTP " + response.status + "）");
    }
    const result = data.result;
    for (const [row, col, message] of data.errors || []) {
      result[row][col] = cellError(message);
    }
    return result;
  }

  globalThis.lanxiCall = lanxiCall;
})();
