// The fields pipers have seen in the dataset's output (GetDatasetFields), with their types.
import type { DatasetFields } from "@sdk/datasets_pb";
import { Badge } from "../../components/ui";
import { ago, num } from "../../format";

export function KnownFields({ fields }: { fields: DatasetFields }) {
  if (fields.fields.length === 0) {
    return (
      <p className="muted">
        No records processed yet: once pipers store the dataset's first batch, its fields and their types appear here
        (and field inputs above suggest them).
      </p>
    );
  }
  const sorted = [...fields.fields].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <>
      <p className="small muted">
        {num(fields.records)} records observed; updated {ago(fields.updateTime)}.
      </p>
      <div className="table-wrap">
        <table aria-label="Known fields">
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Type</th>
              <th scope="col" className="num">Filled</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((f) => {
              // Most batches first.
              const types = Object.entries(f.types)
                .sort(([a, x], [b, y]) => (x === y ? a.localeCompare(b) : x > y ? -1 : 1))
                .map(([t]) => t);
              const filled = f.records > 0n ? Math.round((Number(f.nonNull) / Number(f.records)) * 100) : 0;
              return (
                <tr key={f.name}>
                  <td className="mono">{f.name}</td>
                  <td className="mono">
                    {f.type}
                    {types.length > 1 && (
                      <>
                        {" "}
                        <Badge tone="warn">changed: {types.join(", ")}</Badge>
                      </>
                    )}
                  </td>
                  <td className="num">{filled}%</td>
                  <td className="small">{ago(f.lastSeenTime)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </>
  );
}
