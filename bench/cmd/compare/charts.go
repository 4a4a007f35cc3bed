package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colours: ginws stands out, ginws-events (the same library, event-driven)
// is a lighter orange beside it, the peers are grey-blue, the gobwas floor
// is a lighter grey so it reads as a reference rather than a contender.
var (
	colGinws       = color.RGBA{R: 0xd6, G: 0x5f, B: 0x00, A: 0xff}
	colGinwsEvents = color.RGBA{R: 0xf2, G: 0xa6, B: 0x3b, A: 0xff}
	colPeer        = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	colFloor       = color.RGBA{R: 0x9a, G: 0x9a, B: 0x9a, A: 0xff}
)

func libColor(lib string) color.Color {
	switch lib {
	case "ginws":
		return colGinws
	case "ginws-events":
		return colGinwsEvents
	case "gobwas":
		return colFloor
	}
	return colPeer
}

func echoChartName(sc *EchoScenario) string {
	return fmt.Sprintf("echo_%d_%d.png", sc.Size, sc.Conns)
}

// writeCharts draws one bar chart per echo scenario, one for idle memory, one
// for upgrades, and one of every scenario relative to ginws.
func writeCharts(dir string, r *Report) ([]string, error) {
	var written []string
	var firstErr error
	save := func(name string, p *plot.Plot, err error) {
		if err == nil && p != nil {
			w := 7 * vg.Inch
			if name == "echo_vs_ginws.png" {
				w = 9 * vg.Inch
			}
			err = p.Save(w, 4.5*vg.Inch, filepath.Join(dir, name))
		}
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", name, err)
			}
			return
		}
		if p != nil {
			written = append(written, name)
		}
	}

	for _, sc := range r.Echo {
		var libs []string
		var vals []float64
		for _, lib := range r.Libs {
			if e := sc.Results[lib]; e != nil && e.Error == "" {
				libs = append(libs, lib)
				vals = append(vals, e.Result.MsgsPerSec)
			}
		}
		p, err := barChart("Echo "+sc.Name+": messages/s (higher is better)", "messages/s", libs, vals, fmtCount)
		save(echoChartName(sc), p, err)
	}

	if r.Idle != nil {
		var libs []string
		var vals []float64
		for _, lib := range r.Libs {
			if e := r.Idle[lib]; e != nil && e.Result.RSSAfterKiB > 0 {
				libs = append(libs, lib)
				vals = append(vals, e.Result.RSSPerConnKiB)
			}
		}
		n := 0
		for _, e := range r.Idle {
			n = max(n, e.Result.Connected)
		}
		p, err := barChart(fmt.Sprintf("Server RSS per idle connection, %d connections (lower is better)", n), "KiB per connection", libs, vals,
			func(v float64) string { return fmt.Sprintf("%.1f", v) })
		save("idle_rss_per_conn.png", p, err)
	}

	if r.Upgrade != nil {
		var libs []string
		var vals []float64
		for _, lib := range r.Libs {
			if e := r.Upgrade[lib]; e != nil && e.Result.Upgrades > 0 {
				libs = append(libs, lib)
				vals = append(vals, e.Result.UpgradesPerSec)
			}
		}
		p, err := barChart("Upgrades per second: open, handshake, close (higher is better)", "upgrades/s", libs, vals, fmtCount)
		save("upgrades_per_sec.png", p, err)
	}

	if p, err := relativeChart(r); p != nil || err != nil {
		save("echo_vs_ginws.png", p, err)
	}
	return written, firstErr
}

func barChart(title, ylabel string, libs []string, vals []float64, format func(float64) string) (*plot.Plot, error) {
	if len(libs) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	top := 0.0
	for _, v := range vals {
		top = math.Max(top, v)
	}
	p.Y.Max = top * 1.15
	if p.Y.Max == 0 {
		p.Y.Max = 1
	}
	p.Y.Tick.Marker = niceTicks(niceStep(p.Y.Max/6), shortNumber)
	p.Add(plotter.NewGrid())

	width := vg.Points(40)
	for i, lib := range libs {
		// One BarChart per bar so that each can have its own colour.
		vs := make(plotter.Values, len(libs))
		vs[i] = vals[i]
		bc, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, err
		}
		bc.Color = libColor(lib)
		bc.LineStyle.Width = 0
		p.Add(bc)
	}
	p.NominalX(libs...)

	xys := make(plotter.XYs, len(libs))
	labels := make([]string, len(libs))
	for i := range libs {
		xys[i] = plotter.XY{X: float64(i), Y: vals[i]}
		labels[i] = format(vals[i])
	}
	lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range lb.TextStyle {
		lb.TextStyle[i].XAlign = draw.XCenter
		lb.TextStyle[i].YAlign = draw.YBottom
		lb.TextStyle[i].Font.Size = vg.Points(9)
	}
	lb.Offset = vg.Point{Y: vg.Points(2)}
	p.Add(lb)
	return p, nil
}

// relativeChart draws, for each echo scenario, one bar per peer: its
// messages/s divided by that of ginws, with a line at 1.
func relativeChart(r *Report) (*plot.Plot, error) {
	if !contains(r.Libs, "ginws") || len(r.Echo) == 0 {
		return nil, nil
	}
	var peers []string
	for _, lib := range r.Libs {
		if lib != "ginws" {
			peers = append(peers, lib)
		}
	}
	if len(peers) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "Echo throughput relative to ginws (above 1: peer faster)"
	p.Y.Label.Text = "messages/s ÷ ginws messages/s"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())

	var names []string
	top := 1.0
	for _, sc := range r.Echo {
		names = append(names, strings.ReplaceAll(sc.Name, " × ", "\n× "))
	}
	width := vg.Points(8)
	palette := []color.Color{
		color.RGBA{0x4c, 0x72, 0xb0, 0xff}, color.RGBA{0x55, 0xa8, 0x68, 0xff},
		color.RGBA{0xc4, 0x4e, 0x52, 0xff}, color.RGBA{0x81, 0x72, 0xb2, 0xff},
		color.RGBA{0x93, 0x78, 0x60, 0xff}, color.RGBA{0xda, 0x8b, 0xc3, 0xff},
		color.RGBA{0x8c, 0x8c, 0x8c, 0xff}, color.RGBA{0xcc, 0xb9, 0x74, 0xff},
	}
	drawn := 0
	next := 0 // the peers' colours, the same with or without ginws-events
	for i, lib := range peers {
		vs := make(plotter.Values, len(r.Echo))
		for j, sc := range r.Echo {
			e, base := sc.Results[lib], sc.Results["ginws"]
			if e != nil && base != nil && e.Error == "" && base.Error == "" && base.Result.MsgsPerSec > 0 {
				vs[j] = e.Result.MsgsPerSec / base.Result.MsgsPerSec
				top = math.Max(top, vs[j])
			}
		}
		bc, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, err
		}
		switch lib {
		case "ginws-events":
			bc.Color = colGinwsEvents
		case "gobwas":
			bc.Color = colFloor
			next++
		default:
			bc.Color = palette[next%len(palette)]
			next++
		}
		bc.LineStyle.Width = 0
		bc.Offset = vg.Length(float64(i)-float64(len(peers)-1)/2) * width
		p.Add(bc)
		p.Legend.Add(lib, bc)
		drawn++
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Color = colGinws
	one.Width = vg.Points(1.5)
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(one)
	p.Legend.Add("ginws = 1", one)
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Y.Max = top * 1.5 // room for the legend
	// A labelled tick every "nice" step, so that ratios can be read off
	// (the default ticker labels only the ends of short ranges).
	p.Y.Tick.Marker = niceTicks(niceStep(p.Y.Max/6), func(v float64) string { return trimZero(fmt.Sprintf("%.2f", v)) })
	p.NominalX(names...)
	// Room on both sides for the outer bars of the first and last groups.
	p.X.Min, p.X.Max = -0.6, float64(len(r.Echo)-1)+0.6
	p.X.Tick.Label = text.Style{
		Color: color.Black, Font: p.X.Tick.Label.Font,
		XAlign: draw.XCenter, YAlign: draw.YTop, Handler: p.X.Tick.Label.Handler,
	}
	return p, nil
}

// niceTicks labels a tick every step from 0, with an unlabelled one halfway.
func niceTicks(step float64, label func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ticks []plot.Tick
		for i := 0; float64(i)*step <= max+step*1e-9; i++ {
			v := float64(i) * step
			ticks = append(ticks, plot.Tick{Value: v, Label: label(v)})
			if sub := v + step/2; sub < max {
				ticks = append(ticks, plot.Tick{Value: sub})
			}
		}
		return ticks
	})
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	pow := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= x {
			return m * pow
		}
	}
	return 10 * pow
}

func shortNumber(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	}
	return trimZero(fmt.Sprintf("%.2f", v))
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	return s
}
