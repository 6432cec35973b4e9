// A real headless Chromium for tests and benchmarks: Debian's `chromium`
// driven by puppeteer-core (its own browser downloads cannot work here). A
// browser that cannot start is an error with a message saying what to
// install, never a skipped test. Each browser gets a fresh profile, removed
// when it closes; every page records the requests it (and its workers) made
// and the main thread's long tasks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

// Functions given to page.evaluate run in the browser, where these exist.
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The browser binary: LANEPIR_CHROMIUM, else Debian's chromium. */
export const CHROMIUM = process.env.LANEPIR_CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  browser: Browser;
  profile: string;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<TestBrowser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get update && apt-get install -y chromium; .ci/run does this) or set LANEPIR_CHROMIUM to a Chromium binary`);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-chromium-'));
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      // The flags are ours (--headless among them): puppeteer adds no headless mode of its own.
      headless: false,
      args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`],
      timeout: 60_000,
      protocolTimeout: 180_000,
    });
  } catch (err) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw new Error(`Chromium (${CHROMIUM}) could not start: ${(err as Error).message.split('\n')[0]}`);
  }
  let closed = false;
  return {
    browser,
    profile,
    async close() {
      if (closed) return;
      closed = true;
      const proc = browser.process();
      await Promise.race([browser.close().catch(() => undefined), new Promise((r) => setTimeout(r, 10_000))]);
      if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A long task the page's PerformanceObserver saw (ms since the page's time origin). */
export interface LongTask {
  start: number;
  duration: number;
}

export interface RecordedPage {
  page: Page;
  /** Every URL the page and its workers requested, in order. */
  requests: string[];
  /** Errors thrown on the page (uncaught). */
  errors: string[];
  /** The long tasks the page observed so far. */
  longTasks(): Promise<LongTask[]>;
  /** What the page's Content-Security-Policy blocked (an attempt to reach elsewhere never shows up as a request). */
  cspViolations(): Promise<string[]>;
}

/** A new page that records requests and long tasks (the observer is installed before any script runs). */
export async function recordedPage(browser: Browser): Promise<RecordedPage> {
  const page = await browser.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  // Requests of the page's dedicated workers are reported on the page too.
  page.on('request', (r) => void requests.push(r.url()));
  page.on('pageerror', (e) => void errors.push(String((e as Error).message ?? e)));
  await page.evaluateOnNewDocument(() => {
    const w = window as unknown as { __lanepirLongTasks: { start: number; duration: number }[]; __lanepirCsp: string[] };
    w.__lanepirLongTasks = [];
    w.__lanepirCsp = [];
    document.addEventListener('securitypolicyviolation', (e: { blockedURI: string; effectiveDirective: string }) => void w.__lanepirCsp.push(`${e.effectiveDirective} ${e.blockedURI}`));
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__lanepirLongTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask' as 'mark', buffered: true }); // 'longtask' is a browser entry type Node's types do not list
  });
  return {
    page,
    requests,
    errors,
    longTasks: () => page.evaluate(() => (window as unknown as { __lanepirLongTasks: LongTask[] }).__lanepirLongTasks.slice()),
    cspViolations: () => page.evaluate(() => (window as unknown as { __lanepirCsp: string[] }).__lanepirCsp.slice()),
  };
}

/** Waits until the page finished a lookup (body[data-state] is done or error) and returns the state. */
export async function lookupSettled(page: Page, timeoutMs = 120_000): Promise<'done' | 'error'> {
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), { timeout: timeoutMs, polling: 100 });
  return (await page.evaluate(() => document.body.dataset.state)) as 'done' | 'error';
}

export async function testText(page: Page, testId: string): Promise<string> {
  return page.$eval(`[data-testid="${testId}"]`, (e) => e.textContent ?? '');
}

/** A main-thread task from the trace: when it ran (page ms), its wall time and the CPU time the thread used. */
export interface MainThreadTask {
  start: number;
  wall: number;
  cpu: number;
}

interface TraceEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  tdur?: number;
}

/**
 * Traces the browser while `body` runs, then returns the page's main-thread
 * tasks (RunTask events on the thread that ran a marker on the page), with
 * times on the page's performance.now() clock. A task's `cpu` is the time
 * the thread actually ran: on a loaded machine a task's wall time also holds
 * the time the OS gave the CPU to other processes, which is not the page's work.
 */
export async function traceMainThread<T>(page: Page, body: () => Promise<T>): Promise<{ result: T; tasks: MainThreadTask[] }> {
  await page.tracing.start({ categories: ['toplevel', 'disabled-by-default-devtools.timeline', 'blink.user_timing', '__metadata'] });
  let result: T | undefined;
  let failure: { err: unknown } | undefined;
  try {
    result = await body();
  } catch (err) {
    failure = { err };
  }
  const markAt = await page
    .evaluate(() => {
      performance.mark('lanepir-trace-sync');
      return performance.getEntriesByName('lanepir-trace-sync').at(-1)!.startTime;
    })
    .catch(() => Number.NaN);
  const raw = await page.tracing.stop();
  if (failure) throw failure.err;
  if (!raw) throw new Error('the browser returned no trace');
  const parsed = JSON.parse(new TextDecoder().decode(raw)) as { traceEvents?: TraceEvent[] } | TraceEvent[];
  const events = Array.isArray(parsed) ? parsed : (parsed.traceEvents ?? []);
  const mark = events.filter((e) => e.name === 'lanepir-trace-sync').at(-1);
  if (!mark || Number.isNaN(markAt)) throw new Error('the trace has no marker from the page: cannot find its main thread');
  const offset = mark.ts / 1000 - markAt;
  const tasks = events
    .filter((e) => e.name === 'RunTask' && e.ph === 'X' && e.pid === mark.pid && e.tid === mark.tid)
    .map((e) => ({ start: e.ts / 1000 - offset, wall: (e.dur ?? 0) / 1000, cpu: (e.tdur ?? e.dur ?? 0) / 1000 }));
  return { result: result as T, tasks };
}

/**
 * Long tasks over `limitMs` that were the page's own work: for each one the
 * observer reported, the CPU time of the main-thread task(s) it covers. A
 * long task with no matching task in the trace counts as the page's (fail closed).
 */
export function blockingTasks(longTasks: LongTask[], tasks: MainThreadTask[], limitMs = 50): { longTask: LongTask; cpu: number | undefined }[] {
  const out: { longTask: LongTask; cpu: number | undefined }[] = [];
  for (const lt of longTasks) {
    if (lt.duration <= limitMs) continue;
    const covering = tasks.filter((t) => t.start < lt.start + lt.duration + 2 && t.start + t.wall > lt.start - 2 && t.wall > limitMs / 2);
    const cpu = covering.length > 0 ? Math.max(...covering.map((t) => t.cpu)) : undefined;
    if (cpu === undefined || cpu > limitMs) out.push({ longTask: lt, cpu });
  }
  return out;
}
