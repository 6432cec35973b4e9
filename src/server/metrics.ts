// Prometheus metrics of one process. In cluster mode every worker keeps its
// own registry and the primary aggregates them (prom-client's
// AggregatorRegistry); gauges that describe the whole server are set by the
// primary alone. /metrics is the primary's registry followed by the workers'
// aggregate, so no family may be in both: reloads are the primary's to count
// (lanepir_reloads_total, lanepir_reload_duration_seconds), and a worker keeps
// its own reload metrics out of its registry.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface ServerMetricsOptions {
  /** Expose this process's reloads (a single server); false for cluster workers, whose primary counts reloads. */
  reloads?: boolean;
}

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly reloadRegistries: Registry[];
  constructor(opts: ServerMetricsOptions = {}) {
    this.reloadRegistries = opts.reloads === false ? [] : [this.registry];
    this.reloads = new Counter({
      name: 'lanepir_reloads_total',
      help: 'Reloads by result',
      labelNames: ['result'] as const,
      registers: this.reloadRegistries,
    });
    this.reloadDuration = new Histogram({
      name: 'lanepir_reload_duration_seconds',
      help: 'Reload duration',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: this.reloadRegistries,
    });
  }
  readonly reloads: Counter<'result'>;
  readonly reloadDuration: Histogram;
  readonly queries = new Counter({
    name: 'lanepir_queries_total',
    help: 'Queries by lane and HTTP status',
    labelNames: ['lane', 'status'] as const,
    registers: [this.registry],
  });
  readonly queryLatency = new Histogram({
    name: 'lanepir_query_duration_seconds',
    help: 'Query latency from request to answer, by lane',
    labelNames: ['lane'] as const,
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'lanepir_batch_size',
    help: 'Queries answered per pass over a lane',
    labelNames: ['lane'] as const,
    buckets: [1, 2, 4, 8, 12, 16],
    registers: [this.registry],
  });
  readonly kernelBytes = new Counter({
    name: 'lanepir_kernel_bytes_total',
    help: 'Lane bytes scanned by the answer kernel (rate / rate(kernel_seconds) = GB/s)',
    labelNames: ['lane'] as const,
    registers: [this.registry],
  });
  readonly kernelSeconds = new Counter({
    name: 'lanepir_kernel_seconds_total',
    help: 'Time spent in answer kernel passes',
    labelNames: ['lane'] as const,
    registers: [this.registry],
  });
  readonly kernelGbps = new Gauge({
    name: 'lanepir_kernel_gigabytes_per_second',
    help: 'Scan speed of the last pass over a lane',
    labelNames: ['lane'] as const,
    registers: [this.registry],
    aggregator: 'average',
  });
  readonly servedGeneration = new Gauge({
    name: 'lanepir_worker_generation',
    help: 'Generation served by each worker',
    labelNames: ['worker'] as const,
    registers: [this.registry],
    aggregator: 'first',
  });
  readonly refused = new Counter({
    name: 'lanepir_refused_requests_total',
    help: 'Requests refused by the abuse controls, by route and reason (client: per-client cap; route: route cap; merges: every delta merge slot busy)',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'lanepir_in_flight_requests',
    help: 'Requests holding a snapshot',
    registers: [this.registry],
    aggregator: 'sum',
  });
}
