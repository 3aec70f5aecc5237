// Tiny SVG charts (no chart library): a sparkline of a rate over time and a bar chart of counts.
export interface Point {
  t: number; // ms since the epoch
  v: number;
}

export function Sparkline({ points, label, width = 220, height = 48 }: { points: Point[]; label: string; width?: number; height?: number }) {
  if (points.length < 2) {
    return (
      <svg className="spark" width={width} height={height} role="img" aria-label={`${label}: collecting samples`}>
        <line x1="0" y1={height - 1} x2={width} y2={height - 1} className="spark-axis" />
      </svg>
    );
  }
  const t0 = points[0].t;
  const t1 = points[points.length - 1].t;
  const max = Math.max(...points.map((p) => p.v), 1);
  const x = (t: number) => ((t - t0) / Math.max(t1 - t0, 1)) * (width - 2) + 1;
  const y = (v: number) => height - 2 - (v / max) * (height - 6);
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  const last = points[points.length - 1].v;
  return (
    <svg className="spark" width={width} height={height} role="img" aria-label={`${label}: now ${Math.round(last)}, peak ${Math.round(max)}`}>
      <path d={`${d} L${x(t1).toFixed(1)},${height - 1} L${x(t0).toFixed(1)},${height - 1} Z`} className="spark-fill" />
      <path d={d} className="spark-line" />
    </svg>
  );
}

export interface Bar {
  label: string;
  value: number;
}

export function BarChart({ bars, label, height = 160 }: { bars: Bar[]; label: string; height?: number }) {
  const max = Math.max(...bars.map((b) => b.value), 1);
  const w = 100 / Math.max(bars.length, 1);
  return (
    <figure className="bars" aria-label={label}>
      <svg viewBox={`0 0 100 ${height}`} preserveAspectRatio="none" width="100%" height={height} role="img" aria-label={label}>
        {bars.map((b, i) => {
          const h = (b.value / max) * (height - 4);
          return (
            <rect key={i} x={i * w + w * 0.1} y={height - h} width={w * 0.8} height={h} className="bar">
              <title>{`${b.label}: ${b.value}`}</title>
            </rect>
          );
        })}
      </svg>
      {bars.length > 0 && (
        <figcaption className="bars-axis">
          <span>{bars[0].label}</span>
          <span>{bars[bars.length - 1].label}</span>
        </figcaption>
      )}
    </figure>
  );
}
